"""The unit sync script, run for real by a local shell in user mode (units under $HOME) against a
stand-in `systemctl` that records its calls: files written only when changed, daemon-reload only then,
surplus instances stopped and disabled, units of removed groups deleted, enable only when needed;
environment files written 0600 only when changed, removed with their group, never read back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fake_systemctl import fake_systemctl_env

from deploytool import systemd_quote as q
from deploytool.commands.unitfiles import ENV_CHANGED, SEPARATOR, read_all, remove_all, sync
from deploytool.inventory import App
from deploytool.units import MARKER, EnvFile

FAKE_SYSTEMCTL = """#!/bin/sh
# Records each call; answers is-enabled from $STATE/enabled and list-units from $STATE/loaded.
echo "$*" >> "$STATE/calls"
case "$2" in
  is-enabled) shift 2; for u in "$@"; do grep -qx "$u" "$STATE/enabled" && echo enabled || echo disabled; done ;;
  list-units) cat "$STATE/loaded" ;;
  enable) shift 3; for u in "$@"; do echo "$u" >> "$STATE/enabled"; done ;;
esac
exit 0
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return fake_systemctl_env(tmp_path, FAKE_SYSTEMCTL, ("calls", "enabled", "loaded"))


@pytest.fixture
def app() -> App:
    return App.model_validate({"name": "shop", "source": {"repository": "/x"}, "deploy_to": "/srv/shop",
                               "systemd": "user"})


def unit(name: str, body: str = "") -> tuple[str, str]:
    return name, f"[Unit]\n{MARKER}=shop\n{body}"


def run(script: str, env: dict[str, str]) -> str:
    r = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["STATE"], "calls")
    lines = path.read_text().splitlines()
    path.write_text("")
    return lines


def test_first_install_writes_reloads_and_enables(app: App, env: dict[str, str]) -> None:
    files = [unit("shop-a@.service"), unit("shop-workers.target")]
    out = run(sync(app, files, ["shop-a@1.service", "shop-a@2.service"], "shop-workers.target"), env)
    assert out.split() == ["changed"]
    unit_dir = Path(env["HOME"], ".config/systemd/user")
    assert sorted(p.name for p in unit_dir.iterdir()) == ["shop-a@.service", "shop-workers.target"]
    made = calls(env)
    assert "--user daemon-reload" in made
    assert "--user enable --quiet shop-workers.target shop-a@1.service shop-a@2.service" in made


def test_unchanged_units_mean_no_reload_and_no_enable(app: App, env: dict[str, str]) -> None:
    files = [unit("shop-a@.service"), unit("shop-workers.target")]
    script = sync(app, files, ["shop-a@1.service"], "shop-workers.target")
    run(script, env)
    calls(env)
    assert run(script, env) == ""
    made = calls(env)
    assert not any("daemon-reload" in c or " enable " in f" {c} " for c in made), made


def test_shrinking_and_removing_groups(app: App, env: dict[str, str]) -> None:
    run(sync(app, [unit("shop-a@.service"), unit("shop-b@.service"), unit("shop-workers.target")],
             ["shop-a@1.service", "shop-a@2.service", "shop-b@1.service"], "shop-workers.target"), env)
    Path(env["STATE"], "loaded").write_text("shop-a@1.service loaded\nshop-a@2.service loaded\nshop-b@1.service x\n")
    calls(env)
    # a: 2 → 1 process; b: gone.
    out = run(sync(app, [unit("shop-a@.service"), unit("shop-workers.target")], ["shop-a@1.service"],
                   "shop-workers.target"), env)
    assert out.split() == ["changed"]
    made = calls(env)
    assert "--user disable --quiet --now shop-a@2.service" in made
    assert "--user disable --quiet --now shop-b@1.service" in made
    assert not any("shop-a@1.service" in c and "disable" in c for c in made)
    unit_dir = Path(env["HOME"], ".config/systemd/user")
    assert sorted(p.name for p in unit_dir.iterdir()) == ["shop-a@.service", "shop-workers.target"]


def test_other_apps_units_are_left_alone(app: App, env: dict[str, str]) -> None:
    unit_dir = Path(env["HOME"], ".config/systemd/user")
    unit_dir.mkdir(parents=True)
    (unit_dir / "shopfront-a@.service").write_text(f"[Unit]\n{MARKER}=shopfront\n")
    run(sync(app, [unit("shop-workers.target")], [], "shop-workers.target"), env)
    assert (unit_dir / "shopfront-a@.service").exists()


SECRET = "s3cr3t $(touch /tmp/pwned) 'q' \"d\""


def env_file(name: str, value: str = SECRET) -> EnvFile:
    return EnvFile(f"$HOME/.config/deploytool/shop/{name}", q.env_file({"TOKEN": value}))


def test_environment_files_written_private_and_only_when_changed(app: App, env: dict[str, str]) -> None:
    env_dir = Path(env["HOME"], ".config/deploytool/shop")
    files = [unit("shop-a@.service"), unit("shop-workers.target")]
    script = sync(app, files, ["shop-a@1.service"], "shop-workers.target", [env_file("a.env")])
    assert run(script, env).split() == ["changed"]
    written = env_dir / "a.env"
    assert written.read_text() == "TOKEN=\"s3cr3t \\$(touch /tmp/pwned) 'q' \\\"d\\\"\"\n"
    assert written.stat().st_mode & 0o777 == 0o600 and env_dir.stat().st_mode & 0o777 == 0o700
    calls(env)
    assert run(script, env) == ""
    # Only the environment changed: the workers need a restart, systemd no reload.
    changed = sync(app, files, ["shop-a@1.service"], "shop-workers.target", [env_file("a.env", "new")])
    assert run(changed, env).split() == ["changed"]
    assert "TOKEN='new'" in written.read_text()
    assert not any("daemon-reload" in c for c in calls(env))


def test_environment_files_of_gone_groups_are_removed(app: App, env: dict[str, str]) -> None:
    env_dir = Path(env["HOME"], ".config/deploytool/shop")
    files = [unit("shop-a@.service"), unit("shop-b@.service"), unit("shop-workers.target")]
    run(sync(app, files, [], "shop-workers.target", [env_file("a.env"), env_file("b.env")]), env)
    assert sorted(p.name for p in env_dir.glob("*.env")) == ["a.env", "b.env"]
    out = run(sync(app, files[:1] + files[2:], [], "shop-workers.target", [env_file("a.env")]), env)
    assert out.split() == ["changed"]
    assert sorted(p.name for p in env_dir.glob("*.env")) == ["a.env"]
    run(remove_all(app), env)
    assert not env_dir.exists()


def test_read_all_names_changed_environment_files_without_their_content(app: App, env: dict[str, str]) -> None:
    files = [unit("shop-a@.service"), unit("shop-workers.target")]
    run(sync(app, files, [], "shop-workers.target", [env_file("a.env"), env_file("b.env")]), env)
    out = run(read_all(app, [env_file("a.env"), env_file("b.env", "other"), env_file("c.env")]), env)
    assert "s3cr3t" not in out and "other" not in out
    head = out.split(SEPARATOR)[0].split()
    assert head == [ENV_CHANGED, "b.env", ENV_CHANGED, "c.env"]
    out = run(read_all(app, [env_file("b.env")]), env)
    assert out.split(SEPARATOR)[0].split() == [ENV_CHANGED, "a.env"]  # b.env is as wanted; a.env would go
    assert "shop-a@.service" in out
