"""`fab workers.render --out DIR`: a host's units as files, laid out as `systemctl enable` would,
written without connecting to any host."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def render(host: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv/bin/fab"), "-r", str(ROOT), "workers.render", "--host", host,
                           "--out", str(out)], capture_output=True, text=True, check=False, timeout=60)


def test_render_writes_units_and_enabled_instances(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert render("prod-a", a).returncode == 0 and render("prod-b", b).returncode == 0
    names = sorted(p.name for p in a.iterdir())
    single = ["celery-rabbit", "celery-redis", "consumer", "dramatiq"]  # one process on each host
    assert names == [*(f"sample-{g}@.service" for g in single), "sample-rq@.service", "sample-sidekiq@.service",
                     "sample-workers.target", "sample-workers.target.wants"]
    wants_a = sorted(p.name for p in (a / "sample-workers.target.wants").iterdir())
    wants_b = sorted(p.name for p in (b / "sample-workers.target.wants").iterdir())
    assert wants_a == [*(f"sample-{g}@1.service" for g in single), "sample-rq@1.service", "sample-rq@2.service",
                       "sample-sidekiq@1.service", "sample-sidekiq@2.service", "sample-sidekiq@3.service"]
    assert wants_b == [*(f"sample-{g}@1.service" for g in single), "sample-rq@1.service", "sample-rq@2.service",
                       "sample-sidekiq@1.service", "sample-sidekiq@2.service"]
    link = a / "sample-workers.target.wants" / "sample-sidekiq@3.service"
    assert link.readlink() == Path("../sample-sidekiq@.service")
    # prod-b's own threads setting shows in its unit; prod-a's does not have it.
    assert " -c 5 " in (a / "sample-sidekiq@.service").read_text()
    assert " -c 3 " in (b / "sample-sidekiq@.service").read_text()


def test_render_again_replaces_stale_instances(tmp_path: Path) -> None:
    assert render("prod-a", tmp_path).returncode == 0
    assert render("prod-b", tmp_path).returncode == 0
    wants = sorted(p.name for p in (tmp_path / "sample-workers.target.wants").iterdir())
    assert "sample-sidekiq@3.service" not in wants


def test_render_of_an_unknown_host_is_bad_input(tmp_path: Path) -> None:
    r = render("nope", tmp_path)
    assert r.returncode == 2 and "--host nope: no such host" in r.stderr and not any(tmp_path.iterdir())
