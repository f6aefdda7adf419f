"""The plan of every worker operation (pure: argv and shell text, nothing sent), what a unit sync would
do to the instances a host has, and the dry run's data and text. Shell that reads or recovers is run by
a real local shell against stand-in `systemctl` and `sudo`."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from local_shell import LocalShell

from deploytool.commands import ready, unitfiles
from deploytool.commands import systemctl as sc
from deploytool.engine.execute import Execution
from deploytool.engine.plan import Plan, Script, describe
from deploytool.engine.runner import Job, dry_run_text, plan_data
from deploytool.inventory import Inventory, load_inventory
from deploytool.operations import workers as ops
from deploytool.operations.workers import Workers, instance_changes, instance_effects, parse_instances
from deploytool.remote import join
from deploytool.report import HostReport, Reporter
from deploytool.units import MARKER

UNITS = Path(__file__).resolve().parent / "inventories" / "units.yml"
SIDEKIQ = "shop-sidekiq@1.service shop-sidekiq@2.service"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(UNITS)


def workers(inv: Inventory, app: str, group: str | None = None) -> Workers:
    return Workers(inv, "w1", inv.apps_on("w1")[app], group)


def steps(plan: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(s.stage, s.command, s.arms) for a in plan.actions if isinstance(a, Script) for s in a.steps]


# --- the plans -------------------------------------------------------------------------------------

def test_start_starts_the_target_and_each_instance(inv: Inventory) -> None:
    plan = ops.start_plan(workers(inv, "shop", "sidekiq"))
    assert describe(plan) == [("start", [f"sudo -n systemctl start shop-workers.target {SIDEKIQ}"])]
    assert plan.recovery == ()


def test_stop_stops_then_requeues_and_undoes_nothing(inv: Inventory) -> None:
    plan = ops.stop_plan(workers(inv, "shop", "sidekiq"))
    assert describe(plan) == [("stop", [f"sudo -n systemctl stop {SIDEKIQ}"])]
    assert plan.recovery == ()  # a failed stop is what was asked for: nothing is started again
    [(stage, command, arms)] = steps(ops.stop_plan(workers(inv, "shop", "rq")))
    assert stage == "stop" and arms == ()
    assert command.startswith("sudo -n systemctl stop shop-rq@1.service\n") and "DEPLOYTOOL_REQUEUE_END" in command


def test_quiet_sends_each_kinds_own_mechanism_and_nothing_for_the_others(inv: Inventory) -> None:
    plan = ops.quiet_plan(workers(inv, "shop", "sidekiq"))
    assert describe(plan) == [
        ("quiet", ["sudo -n systemctl kill --kill-whom=main --signal=SIGTSTP 'shop-sidekiq@*.service'"])]
    assert plan.recovery == ()
    assert len(steps(ops.quiet_plan(workers(inv, "shop", "celery")))) == 4  # a node each, all its queues
    assert ops.quiet_plan(workers(inv, "shop", "rq")) == Plan(())


def test_groups_quieted_by_the_same_signal_share_one_systemctl_call(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    more = {**app.workers, "mailers": app.workers["sidekiq"].model_copy(update={"name": "mailers"})}
    w = Workers(inv, "w1", app.model_copy(update={"workers": more}))
    kills = [c for c in w.quiet_commands() if " kill " in c]
    assert kills == ["sudo -n systemctl kill --kill-whom=main --signal=SIGTSTP 'shop-sidekiq@*.service' "
                     "'shop-mailers@*.service'"]


def test_enable_and_disable_switch_start_at_boot_only(inv: Inventory) -> None:
    w = workers(inv, "shop", "sidekiq")
    assert describe(ops.enable_plan(w)) == [
        ("enable", [f"sudo -n systemctl enable --quiet shop-workers.target {SIDEKIQ}"])]
    assert describe(ops.disable_plan(w)) == [
        ("disable", [f"sudo -n systemctl disable --quiet shop-workers.target {SIDEKIQ}"])]


def test_uninstall_removes_every_unit_of_the_app(inv: Inventory) -> None:
    w = workers(inv, "shop")
    assert steps(ops.uninstall_plan(w)) == [("uninstall", unitfiles.remove_all(w.app), ())]


def test_restart_is_undone_by_bringing_the_workers_back(inv: Inventory) -> None:
    w = workers(inv, "shop", "sidekiq")
    plan = ops.restart_plan(w)
    assert [(s, a) for s, _, a in steps(plan)] == [("restart", ("workers",))] * 2
    assert steps(plan)[1][1] == ops.restart_script(w)
    assert [(r.name, r.command) for r in plan.recovery] == [("workers", ops.recover_script(w))]


def test_no_instances_no_plan(inv: Inventory) -> None:
    nothing = workers(inv, "shop", "no-such-group")
    for build in (ops.start_plan, ops.stop_plan, ops.quiet_plan, ops.enable_plan, ops.disable_plan,
                  ops.restart_plan):
        assert build(nothing) == Plan(()), build


def test_install_records_what_runs_then_syncs(inv: Inventory) -> None:
    w = workers(inv, "shop")
    [(s1, running, a1), (s2, sync, a2)] = steps(ops.install_plan(w))
    assert (s1, a1, s2, a2) == ("install", (), "install", ("workers",))
    patterns = " ".join(f"'shop-{g.name}@*.service'" for g in w.groups)
    assert running == (f"printf '%s %s\\n' @@deploytool-running \"$(sudo -n systemctl list-units --state=active "
                       f"--plain --no-legend {patterns} | awk '{{print $1}}' | tr '\\n' ' ')\"")
    assert sync == w.install_script()
    assert ops.install_plan(w).recovery == ()  # nothing known to have run: nothing to start


def test_install_recovery_starts_the_wanted_instances_that_ran(inv: Inventory) -> None:
    w = workers(inv, "shop")
    plan = ops.install_plan(w, facts={"running": "shop-sidekiq@2.service shop-sidekiq@9.service shop-rq@1.service"})
    # @9 is not wanted any more: the sync stopped it on purpose.
    assert [(r.name, r.command) for r in plan.recovery] == [
        ("workers", "sudo -n systemctl start shop-sidekiq@2.service shop-rq@1.service")]


def test_install_dry_plan_names_the_sync_without_the_environment_files(inv: Inventory) -> None:
    w = workers(inv, "shop")
    [_, (_, sync, _)] = steps(ops.install_plan(w, dry=True))
    assert sync == ops.SYNC_PLAN
    assert "base64" in w.install_script() and "base64" not in "".join(c for _, c, _ in steps(
        ops.install_plan(w, dry=True)))


def test_user_mode_install_lingers_and_runs_no_sudo_systemctl(inv: Inventory) -> None:
    w = workers(inv, "tools")
    [(_, running, _), (_, sync, _)] = steps(ops.install_plan(w))
    assert "systemctl --user list-units --state=active" in running
    # A user that cannot linger fails the install (its workers would not start at boot); one that
    # lingers already is not asked again when nothing else changed.
    user = w.inv.hosts['w1'].user
    assert f"\nif ! units_unchanged; then\nsudo -n loginctl enable-linger {user} && {{\n" in sync
    assert f"[ -e /var/lib/systemd/linger/{user} ] || return 1" in sync
    assert "sudo -n systemctl" not in running + sync


# --- run in a real shell -----------------------------------------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
# Records each call; list-units prints $STATE/loaded (systemd's columns).
echo "$*" >> "$STATE/calls"
for a in "$@"; do case $a in list-units) cat "$STATE/loaded";; esac; done
exit 0
"""


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    bin_dir, state, home = tmp_path / "bin", tmp_path / "state", tmp_path / "home"
    for d in (bin_dir, state, home):
        d.mkdir()
    for name, body in (("systemctl", FAKE_SYSTEMCTL), ("sudo", "#!/bin/sh\nexit 1\n")):  # no sudo rights
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (state / "calls").write_text("")
    (state / "loaded").write_text("tools-tricky@1.service loaded active running tricky\n"
                                  "tools-tricky@2.service loaded failed failed tricky\n")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home), "STATE": str(state)}


@pytest.mark.usefixtures("not_cancelled")
def test_a_failed_install_starts_the_workers_that_ran(inv: Inventory, shell_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    # enable-linger fails (no sudo rights) after the running instances were recorded.
    w = workers(inv, "tools")
    report = HostReport("w1", "tools")
    ok = Execution(LocalShell(shell_env, tmp_path), "w1", report, Reporter(out=io.StringIO())).run(
        lambda facts: ops.install_plan(w, facts=facts))
    assert not ok and report.error and "install: exit 1" in report.error
    assert [(s.name, s.status) for s in report.stages] == [("install", "failed"), ("recover:workers", "ok")]
    calls = (Path(shell_env["STATE"]) / "calls").read_text().splitlines()
    assert calls[-1] == "--user start tools-tricky@1.service"  # the one that ran; @2 had failed before


def test_read_instances_lists_loaded_and_enabled_instances(inv: Inventory, shell_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    w = workers(inv, "tools")
    units = Path(shell_env["HOME"]) / ".config/systemd/user"
    wants = units / "tools-workers.target.wants"
    wants.mkdir(parents=True)
    (units / "tools-tricky@.service").write_text(f"[Unit]\n{MARKER}=tools\n")
    (units / "other@.service").write_text(f"[Unit]\n{MARKER}=other\n")
    for n in (1, 3):
        (wants / f"tools-tricky@{n}.service").symlink_to("../tools-tricky@.service")
    (tmp_path / "tools-tricky@7.service").write_text("")  # the shell must not expand the pattern to this
    out = LocalShell(shell_env, tmp_path).run(unitfiles.read_instances(w.app, w.target), "preview").stdout
    assert parse_instances(out) == ({"tools-tricky@1.service": "active", "tools-tricky@2.service": "failed"},
                                    ["tools-tricky@1.service", "tools-tricky@3.service"])
    calls = (Path(shell_env["STATE"]) / "calls").read_text().splitlines()
    assert calls == ["--user list-units --all --plain --no-legend tools-tricky@*.service"]


# --- instance changes --------------------------------------------------------------------------------

def test_shrinking_stops_and_disables_the_surplus_instance() -> None:
    loaded = {"a-s@1.service": "active", "a-s@2.service": "active"}
    assert instance_changes(loaded, ["a-s@1.service", "a-s@2.service"], ["a-s@1.service"], starts=False) == [
        "a-s@2.service: running, would be stopped and disabled (not wanted)"]


def test_surplus_instances_say_what_is_left_to_undo() -> None:
    loaded = {"a-s@3.service": "activating", "a-s@4.service": "inactive"}
    assert instance_changes(loaded, ["a-s@4.service", "a-s@5.service"], [], starts=True) == [
        "a-s@3.service: running, would be stopped (not wanted)",
        "a-s@4.service: not running, would be disabled (not wanted)",
        "a-s@5.service: not running, would be disabled (not wanted)",
    ]


def test_growing_enables_new_instances_and_a_deploy_starts_them() -> None:
    loaded = {"a-s@1.service": "active"}
    wanted = ["a-s@1.service", "a-s@2.service", "a-s@10.service"]
    assert instance_changes(loaded, ["a-s@1.service"], wanted, starts=False) == [
        "a-s@2.service: would be enabled (not started: workers.start or a deploy starts it)",
        "a-s@10.service: would be enabled (not started: workers.start or a deploy starts it)",
    ]
    assert instance_changes(loaded, ["a-s@1.service"], wanted, starts=True) == [
        "a-s@2.service: would be enabled and started", "a-s@10.service: would be enabled and started"]


def test_an_enabled_stopped_instance_is_started_by_a_deploy_only() -> None:
    assert instance_changes({}, ["a-s@1.service"], ["a-s@1.service"], starts=False) == []
    assert instance_changes({"a-s@1.service": "failed"}, ["a-s@1.service"], ["a-s@1.service"], starts=True) == [
        "a-s@1.service: would be started"]


@pytest.mark.parametrize(("op", "expected"), [
    ("start", ["a@2.service: would be started", "a@3.service: would be started"]),
    ("stop", ["a@1.service: would be stopped"]),
    ("restart", ["a@1.service: would be restarted", "a@2.service: would be started", "a@3.service: would be started"]),
    ("enable", ["a@3.service: would be enabled"]),
    ("disable", ["a@1.service: would be disabled", "a@2.service: would be disabled"]),
])
def test_what_each_operation_does_to_each_instance(op: str, expected: list[str]) -> None:
    loaded = {"a@1.service": "active", "a@2.service": "failed"}
    enabled = ["a@1.service", "a@2.service"]
    assert instance_effects(loaded, enabled, ["a@1.service", "a@2.service", "a@3.service"], op) == expected


def test_an_operation_that_changes_nothing_says_so() -> None:
    assert instance_effects({"a@1.service": "active"}, [], ["a@1.service"], "start") == [
        "(no instance would be started)"]


# --- the dry run's data and text ---------------------------------------------------------------------

def test_dry_run_data_has_stages_commands_changes_and_recovery(inv: Inventory) -> None:
    w = workers(inv, "shop", "rq")
    data = plan_data(ops.restart_plan(w), ["shop-rq@1.service: would be restarted"])
    assert data == {"plan": [{"stage": "restart", "commands": [ops.restart_script(w)]}],
                    "changes": ["shop-rq@1.service: would be restarted"], "on_failure": ["workers"]}


def test_dry_run_text_shows_changes_stages_and_errors(inv: Inventory) -> None:
    w = workers(inv, "shop", "rq")
    jobs = [Job("w1", w.app, lambda _: ops.stop_plan(w), title="stop"), Job("w2", w.app, lambda _: Plan(()))]
    ok, down = HostReport("w1", "shop"), HostReport("w2", "shop", status="failed", error="w2: connect: refused")
    ok.details.update(plan_data(ops.stop_plan(w), ["shop-rq@1.service: would be stopped"]))
    concise = dry_run_text(jobs, [ok, down])
    assert concise.splitlines()[:6] == [
        "dry run: nothing is uploaded, locked or changed; hosts are only read (checks, units, instances, releases)",
        "", "w1: shop: stop", "  would change:", "    shop-rq@1.service: would be stopped",
        "  stages: stop  (--verbose: each stage's commands)"]
    assert "sudo" not in concise and concise.endswith("w2: shop\n  error: w2: connect: refused")
    text = dry_run_text(jobs, [ok, down], verbose=True)
    assert text.splitlines()[5] == "  [stop]"
    assert "    sudo -n systemctl stop shop-rq@1.service" in text
    # The requeue program is named, not printed line by line.
    assert "<<'DEPLOYTOOL_REQUEUE_END' || echo 'could not requeue unfinished rq jobs of shop-rq'  " \
           "(here-document: the deploytool/requeue program)\n    } </dev/null" in text and "import " not in text
    assert text.endswith("w2: shop\n  error: w2: connect: refused")
    assert "[on failure]" not in text  # a stop is not undone


def test_dry_run_text_lists_what_would_fail_and_summarizes_unit_diffs(inv: Inventory) -> None:
    from deploytool.engine.runner import summarize_changes

    w = workers(inv, "shop", "rq")
    report = HostReport("w1", "shop", status="failed", error="w1: would fail: linked file: x")
    report.details.update(plan_data(ops.stop_plan(w), ops.unit_diff({"a.service": "x\ny\n", "c.service": "z"},
                                                                    {"a.service": "x\nY\nw\n", "b.service": "1\n2"},
                                                                    ["/etc/deploytool/shop/rq.env"])))
    report.details["problems"] = ["linked file: /srv/shop/shared/.env: missing; upload it: fab config.upload ..."]
    text = dry_run_text([Job("w1", w.app, lambda _: Plan(()))], [report])
    assert text.splitlines()[2:9] == [
        "w1: shop", "  would fail (the real run stops at its check stage, nothing changed):",
        "    linked file: /srv/shop/shared/.env: missing; upload it: fab config.upload ...", "  would change:",
        "    a.service: changed (+2 -1 lines)", "    b.service: new unit (2 lines)", "    c.service: would be removed"]
    assert summarize_changes(["/etc/deploytool/shop/rq.env: (environment file changed)", "u@1.service: would be "
                              "started"]) == ["/etc/deploytool/shop/rq.env: (environment file changed)",
                                              "u@1.service: would be started"]


def test_a_plan_with_a_lock_is_unlocked_last_on_failure() -> None:
    from deploytool.engine.lock import Holder
    from deploytool.operations.deploy import Deploy
    from deploytool.source import Revision

    inv = load_inventory(Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml")
    d = Deploy(inv, "prod-a", inv.apps_on("prod-a")["sample"], Revision("HEAD", "c0ffee" * 6 + "abcd"),
               "20260101000000", None, ())
    data = plan_data(d.build_plan({}, Holder.me("", "20260101000000"), dry=True))
    assert data["on_failure"] == ["switch back", "units", "workers", "remove release", "unlock"]
    assert {"stage": "units", "commands": [ops.SYNC_PLAN]} in data["plan"]


def test_restart_starts_then_waits_until_every_worker_is_ready(inv: Inventory) -> None:
    # The wait runs in a real shell against stand-in states in test_ready.
    w = workers(inv, "shop", "sidekiq")
    assert ops.restart_script(w).endswith(join(sc.start(w.app, [w.target, *w.units])) + "\n"
                                          + ready.wait(w.app, w.groups, "w1"))


# --- rollback ----------------------------------------------------------------------------------------

def test_rollback_plan_after_the_listing_switches_syncs_restarts_and_logs() -> None:
    from deploytool.commands.release import switch_current
    from deploytool.engine.lock import Holder
    from deploytool.operations.releases import rollback_plan

    inv = load_inventory(Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml")
    app = inv.apps_on("prod-a")["sample"]
    holder = Holder.me("", "previous")
    before = rollback_plan(inv, "prod-a", app, None, (), {}, holder)
    assert [s for s, _ in describe(before)] == ["lock", "check"] and before.recovery == ()
    listed = {"output:check": "20260102000000 abc\n20260101000000 def\ncurrent 20260102000000\n"}
    plan = rollback_plan(inv, "prod-a", app, None, (), listed, holder, dry=True)
    stages = dict(describe(plan))
    assert list(stages) == ["lock", "check", "switch", "units", "restart", "log", "unlock"]
    assert stages["units"] == [ops.SYNC_PLAN]
    assert stages["switch"] == [switch_current(app, "20260101000000")]  # the release before current
    assert plan_data(plan)["on_failure"] == ["switch back", "units", "workers", "unlock"]
    real = rollback_plan(inv, "prod-a", app, None, (), listed, holder)
    assert [r.command for r in real.recovery if r.name == "units"] == [Workers(inv, "prod-a", app).install_script()]
