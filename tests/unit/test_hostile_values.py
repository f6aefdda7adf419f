"""Every command builder with hostile inventory values, run for real by bash against a temporary
deploy_to: command substitution, backticks, quotes, globs and spaces must reach commands as plain
text. A canary file that any of them would create must never appear.

sudo, systemctl, journalctl, loginctl and logger are stand-ins on PATH (they only record their
arguments): the point is what the shell does with the text, not what systemd does."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from deploytool import context
from deploytool.commands import release as rel
from deploytool.commands import systemctl as sc
from deploytool.commands import unitfiles
from deploytool.commands.quiet import celery_cancel_consumer
from deploytool.commands.requeue import requeues
from deploytool.inventory import App, Host, Inventory
from deploytool.remote import join, script

STANDINS = ("sudo", "systemctl", "systemd-run", "journalctl", "loginctl", "logger")


def hostile(canary: Path) -> str:
    """One value that runs `touch CANARY` if any shell ever evaluates it, in every way a shell could."""
    return f"x $(touch {canary}) `touch {canary}` ';touch {canary};' \"$(touch {canary})\" * ?[a] ~ & |"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in STANDINS:
        path = bin_dir / name
        # sudo -n CMD... runs CMD (a stand-in too); the others record their arguments and succeed.
        body = 'shift; exec "$@"' if name == "sudo" else f'printf "%s\\n" "$*" >> "{tmp_path}/calls"'
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path / "home")}


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "canary"


@pytest.fixture
def app(tmp_path: Path, canary: Path) -> App:
    bad = hostile(canary)
    return App.model_validate({
        "name": "shop",
        "source": {"repository": bad, "revision": bad},
        "deploy_to": str(tmp_path / "srv" / bad),
        "linked_files": [f"config/{bad}.env"],
        "linked_dirs": [f"log {bad}"],
        "environment": {"TOKEN": bad},
        "env_file": f"config/{bad}",
        "redis": "redis://10.0.0.1:6379/0",
        "workers": {
            "rq": {"kind": "rq", "queues": ["default"], "environment": {"X": bad}},
            "celery": {"kind": "celery", "queues": ["default"], "command": [bad, "-A", bad]},
        },
    })


def inventory(app: App) -> Inventory:
    return Inventory(Path("/nonexistent/inventory.yml"), {"h": Host(name="h", address="10.0.0.1", roles=("app",))},
                     {app.name: app}, {"h": {app.name: app}})


def builders(app: App, bad: str) -> dict[str, Callable[[], str]]:
    inv = inventory(app)
    release = "20260101000000"
    inv = Inventory(Path("inventory.yml"), {"h": Host(name="h", address="10.0.0.2", roles=("app",))},
                    {app.name: app}, {"h": {app.name: app}})
    units = ["shop-rq@1.service"]
    return {
        "check": lambda: rel.check(app),
        "release_after": lambda: rel.release_after(app, release),
        "previous_release": lambda: rel.previous_release(app),
        "unpack_archive": lambda: rel.unpack_archive(app, release, f"{app.deploy_to}/{bad}.tar.gz", bad),
        "git_export": lambda: rel.git_export(app, release, bad),
        "link_shared": lambda: rel.link_shared(app, release),
        "build": lambda: rel.build(inv, "h", app, release, [bad]),
        "switch_current": lambda: rel.switch_current(app, release),
        "switch_back": lambda: rel.switch_back(app, release, "20250101000000"),
        "cleanup": lambda: rel.cleanup(app),
        "remove_release": lambda: rel.remove_release(app, release),
        "log_revision": lambda: rel.log_revision(app, bad),
        "list_releases": lambda: rel.list_releases(app),
        "stage": lambda: rel.stage(bad),
        "systemctl": lambda: script(sc.start(app, [bad]), sc.stop(app, [bad]), sc.kill_main(app, [bad], "TSTP"),
                                    sc.show(app, [bad]), sc.is_active(app, [bad]), sc.enable_linger(bad)),
        "journal": lambda: join(sc.logs(app, [bad], 10, bad, False)),
        "unit_sync": lambda: unitfiles.sync(app, [("shop-rq@.service", bad)], units, "shop-workers.target"),
        "unit_read": lambda: unitfiles.read_all(app),
        "unit_remove": lambda: unitfiles.remove_all(app),
        "celery_quiet": lambda: join(context.in_context(inv, "h", app, celery_cancel_consumer([bad], "default", bad),
                                                        app.workers["celery"])),
        "requeue": lambda: "\n".join(requeues(inv, "h", app, [app.workers["rq"]])) or "true",
    }


NAMES = list(builders(App.model_validate({"source": {"repository": "x"}, "deploy_to": "/x"}), "x"))


@pytest.mark.parametrize("name", NAMES)
def test_builder_never_evaluates_an_inventory_value(name: str, app: App, canary: Path, env: dict[str, str],
                                                   tmp_path: Path) -> None:
    text = builders(app, hostile(canary))[name]()
    Path(app.deploy_to, "releases").mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "-s"], input=text + "\nwait\n", env=env, cwd=tmp_path, capture_output=True,
                   text=True, timeout=60, check=False)
    assert not canary.exists(), f"{name}: a hostile value ran as shell code"


def test_hostile_deploy_to_is_used_as_a_plain_path(app: App, canary: Path, env: dict[str, str],
                                                  tmp_path: Path) -> None:
    r = subprocess.run(["bash", "-s"], input=rel.check(app), env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, check=False)
    # The linked file is missing: the message names the hostile path as text, and nothing ran.
    assert r.returncode == 1 and f"linked file missing: {app.shared_path}/" in r.stderr
    assert Path(app.deploy_to, "releases").is_dir() and not canary.exists()
