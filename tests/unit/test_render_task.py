"""`fab workers.render --out DIR`: a host's units as files, laid out as `systemctl enable` would,
written without connecting to any host."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def render(host: str, out: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
    where = ["--out", str(out)] if out is not None else []
    return subprocess.run([str(ROOT / ".venv/bin/fab"), "-r", str(ROOT), "workers.render", "--host", host,
                           *where, *extra], capture_output=True, text=True, check=False, timeout=60)


def test_render_writes_units_and_enabled_instances(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert render("prod-a", a).returncode == 0 and render("prod-b", b).returncode == 0
    names = sorted(p.name for p in a.iterdir())
    single = ["celery-rabbit", "celery-redis", "consumer", "dramatiq"]  # one process on each host
    groups = sorted([*single, "rq", "sidekiq"])
    assert names == ["sample-_app.env", *(f for g in groups for f in (f"sample-{g}.env", f"sample-{g}@.service")),
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


def test_render_shows_ordinary_values_and_masks_only_secrets(tmp_path: Path) -> None:
    # The sandbox's sample app has APP_ENV=production and a REDIS_URL without a password: nothing secret.
    shown = render("prod-a", None)
    assert shown.returncode == 0, shown.stderr
    assert ("# --- prod-a: /etc/deploytool/sample/sidekiq.env\nAPP_ENV='production'\n"
            "REDIS_URL='redis://10.213.0.21:6379/0'\n") in shown.stdout
    assert "***" not in shown.stdout
    assert render("prod-a", tmp_path).returncode == 0
    env = tmp_path / "sample-rq.env"
    assert env.read_text().startswith("APP_ENV='production'\n")
    assert env.stat().st_mode & 0o777 == 0o600
    secrets = render("prod-a", None, "--show-secrets")
    assert "APP_ENV='production'\nREDIS_URL='redis://10.213.0.21:6379/0'\n" in secrets.stdout
