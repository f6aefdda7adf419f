"""The commands worker operations send, built from the kinds table (pure: nothing is run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploytool.commands import running
from deploytool.inventory import Inventory, load_inventory
from deploytool.operations.workers import Workers, recover_script, restart_script, stop_script

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
    assert len(commands) == 4  # four processes (nodes), each asked for its two queues
    # Only while the node's unit runs (one systemctl call per node), tried until the node replies, in
    # the group's context and in the release the node itself runs (a deploy has switched `current`).
    app = inv.apps_on("w1")["shop"]

    def cancel(queue: str) -> str:
        return ("for attempt in $(seq 10); do if "
                "sudo -n systemd-run --quiet --wait --collect --pipe --uid=deploy "
                '"--property=WorkingDirectory=$release" '
                "--property=EnvironmentFile=/etc/deploytool/shop/celery.env "
                "--property=EnvironmentFile=/srv/shop/shared/config/app.env --property=UMask=0027 "
                f"-- /usr/bin/env /srv/shop/venv/bin/celery -A shop control cancel_consumer {queue} -d shop-celery-3@w1"
                '; then break; fi; if [ "$attempt" -eq 10 ]; then false; else sleep 1; fi; done')

    queues = [q.name for q in app.workers["celery"].queues]
    assert commands[2] == running.while_active(app, app.workers["celery"], "shop-celery@3.service",
                                               [cancel(q) for q in queues])
    assert commands[2].count("systemctl") == 1
    # The group's environment values come from its file, never from the command line.
    assert not any("production" in c or "C_FORCE_ROOT" in c for c in commands)


@pytest.mark.parametrize("group", ["rq", "dramatiq", "sneakers", "command"])
def test_kinds_without_quiet_send_nothing_and_say_so(inv: Inventory, group: str) -> None:
    w = workers(inv, "shop", group)
    assert w.quiet_commands() == []
    assert w.unsupported_quiet() == [w.groups[0].kind]


def test_restart_stops_requeues_marks_starts_and_waits_until_ready(inv: Inventory) -> None:
    script = restart_script(workers(inv, "shop"))
    stop = script.index("systemctl stop ")
    requeue = script.index("DEPLOYTOOL_REQUEUE_END")
    mark = script.index(" mark ")  # Dramatiq's consumers counted with the group stopped
    start = script.index("systemctl start shop-workers.target ")
    wait = script.index("ready_states() ")
    assert stop < requeue < mark < start < wait
    assert script.count("<<'DEPLOYTOOL_REQUEUE_END'") == 1  # only RQ needs it


def test_recover_restarts_running_and_starts_enabled_workers(inv: Inventory) -> None:
    script = recover_script(workers(inv, "shop"))
    assert "systemctl try-restart 'shop-sidekiq@*.service'" in script
    assert "systemctl cat shop-workers.target" in script


def test_user_mode_installs_with_linger_and_without_sudo(inv: Inventory) -> None:
    w = workers(inv, "tools")
    script = w.install_script()
    assert "\nsudo -n loginctl enable-linger " in script  # when units_unchanged does not vouch for the host
    assert "systemctl --user is-enabled tools-workers.target " in script
    assert "sudo -n systemctl" not in script


def test_rq_groups_sharing_redis_and_interpreter_are_requeued_in_one_run(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    rq = app.workers["rq"]
    mail = rq.model_copy(update={"name": "mail", "queues": (*rq.queues[1:], *app.workers["dramatiq"].queues)})
    other = rq.model_copy(update={"name": "other", "environment": {"REDIS_URL": "redis://elsewhere:6379/0"}})
    w = Workers(inv, "w1", app.model_copy(update={"workers": {**app.workers, "mail": mail, "other": other}}))
    script = stop_script(w)
    assert script.count("<<'DEPLOYTOOL_REQUEUE_END'") == 2  # rq and mail together; other on its own Redis
    [together, alone] = [line for line in script.splitlines() if "DEPLOYTOOL_REQUEUE_END" in line
                         and line.startswith("{")]
    # Each queue once, in the run of the first group (its context: its environment file).
    assert together.split(" <<")[0].endswith(" high default events")
    assert "EnvironmentFile=/etc/deploytool/shop/rq.env" in together
    assert alone.split(" <<")[0].endswith(" high default") and "/etc/deploytool/shop/other.env" in alone
