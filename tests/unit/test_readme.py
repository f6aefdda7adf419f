"""The README's Quick start, run as written: the commands that need no host, in a new app directory
(after `deploytool init`) and in this repository against its example inventory."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def quick_start() -> str:
    return README.split("## Quick start on your own hosts", 1)[1].split("\n## ", 1)[0]


def blocks(text: str) -> list[list[str]]:
    return [b.strip().splitlines() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)]


def run(cwd: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def test_quick_start_in_a_new_app_works_as_written(tmp_path: Path) -> None:
    build, in_app, on_hosts = blocks(quick_start())
    assert build[0].startswith("python3 -m pip wheel --no-deps -w dist .")
    install, *commands = in_app
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install ")
    assert [c.split()[0] for c in commands] == [".venv/bin/deploytool", ".venv/bin/fab", ".venv/bin/fab"]
    # This checkout's .venv stands in for the app's: the same console scripts, installed from here.
    for line in commands:
        argv = shlex.split(line, comments=True)
        r = run(tmp_path, [str(REPO / argv[0]), *argv[1:]])
        assert r.returncode == 0, f"{line}: {r.stderr}"
    assert any((tmp_path / "units").glob("*-jobs@.service"))
    # The commands that need real hosts name hosts the example inventory has.
    for line in on_hosts:
        argv = shlex.split(line, comments=True)
        if "--host" in argv:
            assert argv[argv.index("--host") + 1] in (tmp_path / "inventories" / "production.yml").read_text()


def test_repository_example_commands_work(tmp_path: Path) -> None:
    text = " ".join(quick_start().split())
    check = "fab inventory.check --inventory production"
    render = "fab workers.render --inventory production --host worker-1 --out units"
    assert f"`{check}`" in text and f"`{render}`" in text
    fab = str(REPO / ".venv" / "bin" / "fab")
    r = run(REPO, [fab, *check.split()[1:]])
    assert r.returncode == 0 and r.stdout.startswith(f"inventory {REPO}/inventories/production.yml: ok"), r.stderr
    r = run(tmp_path, [fab, "-r", str(REPO), *render.split()[1:]])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "units" / "shop-sidekiq@.service").is_file()
