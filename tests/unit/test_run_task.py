"""`fab run -- CMD`: the command after `--` taken word for word, and bad input refused with exit 2
before any host is contacted (the sandbox inventory's hosts are not up during unit tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploytool.errors import InputError
from deploytool.inventory import load_inventory
from deploytool.tasks.run import choose, command_after_dashes, command_text, dry_run_text

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "inventories" / "sandbox.yml"


def fab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv/bin/fab"), "-r", str(ROOT), *args], capture_output=True, text=True,
                          check=False, timeout=60)


def test_the_command_is_every_word_after_the_first_double_dash() -> None:
    argv = ["fab", "run", "--host", "a", "--", "python3", "-c", "import sys; print(sys.executable)", "--", "x y"]
    assert command_after_dashes(argv) == ["python3", "-c", "import sys; print(sys.executable)", "--", "x y"]
    assert command_after_dashes(["fab", "run", "--host", "a"]) == []


def test_one_host_unless_all_and_the_group_must_exist_there() -> None:
    inv = load_inventory(SANDBOX)
    [(host, app, group)] = choose(inv, "prod-a", None, "rq", False)
    assert (host, app.name, group and group.name) == ("prod-a", "sample", "rq")
    assert [h for h, _, _ in choose(inv, None, "sample", None, True)] == ["prod-a", "prod-b"]
    with pytest.raises(InputError, match="name a host with --host"):
        choose(inv, None, None, None, False)
    with pytest.raises(InputError, match="--group nope: no such worker group"):
        choose(inv, "prod-a", None, "nope", False)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--host", "prod-a"], "give the command after `--`"),
    (["run", "--", "true"], "name a host with --host"),
    (["run", "--host", "nowhere", "--", "true"], "--host nowhere: no such host"),
    (["run", "--host", "prod-a", "--group", "nope", "--", "true"], "--group nope: no such worker group"),
])
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    r = fab(*args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_other_tasks_still_refuse_a_command_without_hosts() -> None:
    # Only a named task takes the words after `--`; Fabric's own `fab -H host -- cmd` is left as it was.
    r = fab("--", "true")
    assert r.returncode != 0 and "not given any hosts" in r.stderr


def test_dry_run_prints_each_host_and_its_exact_command_and_runs_nothing() -> None:
    inv = load_inventory(SANDBOX)
    argv = ["rake", "db:migrate VERSION=1"]
    text = dry_run_text(inv, choose(inv, None, "sample", "rq", True), argv, False)
    rq = ("sudo -n systemd-run --quiet --wait --collect --pipe --uid=deploy "
          "--property=WorkingDirectory=/srv/sample/current --property=EnvironmentFile=/etc/deploytool/sample/rq.env "
          "--property=EnvironmentFile=/srv/sample/shared/config/app.env --property=UMask=0027 "
          "-- /usr/bin/env rake 'db:migrate VERSION=1'")
    assert text.splitlines() == [
        "dry run: nothing is run; in the runtime context of the app's workers (docs/runtime.md), "
        "on each host, one after the other:",
        "prod-a: sample: group rq", f"  {rq}", "prod-b: sample: group rq", f"  {rq}"]
    # With a terminal (a console), systemd-run gets one instead of pipes.
    tty = command_text(inv, "prod-a", inv.apps_on("prod-a")["sample"], None, argv, True)
    assert "--pty" in tty and "--pipe" not in tty and tty.endswith("-- /usr/bin/env rake 'db:migrate VERSION=1'")

    # Through fab: the sandbox's hosts are not up during unit tests, so contacting one would fail.
    r = fab("run", "--dry-run", "--host", "prod-a", "--", "echo", "APP_ENV is production")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["prod-a: sample", r.stdout.splitlines()[2]]
    # Ordinary environment values are not secrets: APP_ENV: production is not masked.
    assert r.stdout.splitlines()[2].endswith("-- /usr/bin/env echo 'APP_ENV is production'"), r.stdout
