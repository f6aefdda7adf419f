"""The commands worker operations send, built from the kinds table (pure: nothing is run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deploytool.commands import systemctl as sc
from deploytool.inventory import Inventory, load_inventory
from deploytool.operations.workers import Workers, recover_script, restart_script

UNITS = Path(__file__).resolve().parent / "inventories" / "units.yml"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(UNITS)


def workers(inv: Inventory, app: str, group: str | None = None) -> Workers:
    return Workers(inv, "w1", inv.apps_on("w1")[app], group)


def test_sidekiq_quiet_is_sigtstp_to_the_main_process_of_every_instance(inv: Inventory) -> None:
    [command] = workers(inv, "shop", "sidekiq").quiet_commands()
    assert command == "sudo -n systemctl kill --kill-whom=main --signal=SIGTSTP 'shop-sidekiq@*.service'"


def test_celery_quiet_cancels_each_queue_on_each_node_in_the_group_context(inv: Inventory) -> None:
    commands = workers(inv, "shop", "celery").quiet_commands()
    assert len(commands) == 4 * 2  # four processes, two queues
    # Only while the node's unit runs, tried until the node replies, in the group's context.
    assert commands[4] == (
        "if sudo -n systemctl is-active --quiet shop-celery@3.service; then "
        "for attempt in $(seq 10); do if "
        "sudo -n systemd-run --quiet --wait --collect --pipe --uid=deploy "
        "--property=WorkingDirectory=/srv/shop/current "
        "--property=EnvironmentFile=/etc/deploytool/shop/celery.env "
        "--property=EnvironmentFile=/srv/shop/shared/config/app.env --property=UMask=0027 "
        "-- /usr/bin/env /srv/shop/venv/bin/celery -A shop control cancel_consumer mail -d shop-celery-3@w1"
        '; then break; fi; if [ "$attempt" -eq 10 ]; then false; else sleep 1; fi; done; fi'
    )
    # The group's environment values come from its file, never from the command line.
    assert not any("production" in c or "C_FORCE_ROOT" in c for c in commands)


@pytest.mark.parametrize("group", ["rq", "dramatiq", "sneakers", "command"])
def test_kinds_without_quiet_send_nothing_and_say_so(inv: Inventory, group: str) -> None:
    w = workers(inv, "shop", group)
    assert w.quiet_commands() == []
    assert w.unsupported_quiet() == [w.groups[0].kind]


def test_restart_stops_requeues_starts_and_checks(inv: Inventory) -> None:
    script = restart_script(workers(inv, "shop"))
    stop = script.index("systemctl stop ")
    requeue = script.index("DEPLOYTOOL_REQUEUE_END")
    start = script.index("systemctl start shop-workers.target ")
    check = script.index("systemctl is-active ")
    assert stop < requeue < start < check
    assert script.count("<<'DEPLOYTOOL_REQUEUE_END'") == 1  # only RQ needs it


def test_recover_restarts_running_and_starts_enabled_workers(inv: Inventory) -> None:
    script = recover_script(workers(inv, "shop"))
    assert "systemctl try-restart 'shop-sidekiq@*.service'" in script
    assert "systemctl cat shop-workers.target" in script


def test_user_mode_installs_with_linger_and_without_sudo(inv: Inventory) -> None:
    w = workers(inv, "tools")
    script = w.install_script()
    assert script.startswith("sudo -n loginctl enable-linger ")
    assert "systemctl --user is-enabled tools-workers.target " in script
    assert "sudo -n systemctl" not in script


@pytest.mark.parametrize(
    ("states", "ok"),
    [("active\nactive\n", True), ("active\nactivating\n", False), ("active\n", False), ("", False)],
)
def test_all_active_needs_every_unit_active(inv: Inventory, tmp_path: Path, states: str, ok: bool) -> None:
    # A stand-in systemctl printing the given states (sudo passes through), run by a real shell.
    for name, body in (("sudo", 'shift; exec "$@"'), ("systemctl", f"printf '{states}'")):
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    w = workers(inv, "shop")
    text = sc.all_active(w.app, ["a@1.service", "a@2.service"])
    r = subprocess.run(["sh", "-c", text], env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
                       capture_output=True, text=True, check=False)
    assert (r.returncode == 0) == ok, r.stderr
    if not ok:
        assert r.stderr.startswith("not active: a@")
