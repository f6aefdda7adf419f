"""`fab check` as a plan: one read-only round trip (probes, worker programs, installed units), run by the
one executor in a real local shell against a temporary deploy_to, its output parsed into findings."""

from __future__ import annotations

import io
import os
import signal
import subprocess
from pathlib import Path

import pytest
from local_shell import LocalShell
from test_check_commands import inventory

from deploytool import context
from deploytool.commands import check as probes
from deploytool.commands import release as rel
from deploytool.commands import unitfiles
from deploytool.engine.execute import Execution
from deploytool.engine.plan import Script, describe
from deploytool.operations import check
from deploytool.operations.workers import Workers
from deploytool.report import HostReport, Reporter

pytestmark = pytest.mark.usefixtures("not_cancelled")


def test_one_round_trip_of_read_only_steps(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    app = inv.apps_on("h1")["shop"]
    plan = check.check_plan(inv, "h1", app)
    [action] = plan.actions
    assert isinstance(action, Script) and plan.recovery == () and not action.rolling
    assert [stage for stage, _ in describe(plan)] == ["probe", "programs", "units", "workers"]
    probe, programs, units, _ = (step.command for step in action.steps)
    assert probe.startswith(probes.sudo_rights(["journalctl"])[0]) and probes.released(app) in probe
    # Programs inside the release are resolved only once there is one.
    assert programs == probes.if_released(
        app, context.resolve_programs(inv, "h1", app, marker=probes.PROGRAM),
        context.resolve_programs(inv, "h1", app, skip_release=True, marker=probes.PROGRAM))
    assert units == unitfiles.read_all(app, Workers(inv, "h1", app).env_files)
    # Its data lines are not the executor's fact markers (one value per name): they reach the output.
    assert all(not m.startswith("@@deploytool-") for m in (probes.MARK, probes.PROGRAM))


def test_if_released_picks_by_the_current_release_and_never_fails(tmp_path: Path) -> None:
    app = inventory(tmp_path).apps_on("h1")["shop"]
    text = probes.if_released(app, "echo released; false", "echo not yet; false")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=False)

    assert (run().stdout, run().returncode) == ("not yet\n", 0)
    Path(app.current_path).mkdir(parents=True)
    assert (run().stdout, run().returncode) == ("released\n", 0)


def test_the_plan_run_for_real_gives_every_finding(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    app = inv.apps_on("h1")["shop"]
    shared = Path(app.shared_path)
    (shared / "config").mkdir(parents=True)
    (shared / "config/app.env").write_text("X=1\n")
    shell, report = LocalShell(), HostReport("h1", "shop")
    ex = Execution(shell, "h1", report, Reporter(out=io.StringIO()))
    # Exit 0 although no worker program resolves here: findings, not a failed host.
    assert ex.run(lambda facts: check.check_plan(inv, "h1", app)), report.error
    assert len(shell.scripts) == 1 and [s.name for s in report.stages] == ["probe", "programs", "units", "workers"]
    found = check.check_findings(ex.facts[check.OUTPUT], inv, "h1", app, [], 4096)
    upload = "fab config.upload --app shop --file config/master.key --from PATH"
    assert [(f.check, f.detail) for f in check.problems(found)] == [
        ("linked file", f"{shared}/config/master.key: missing; upload it: {upload}")]
    by_check = {f.check for f in found}
    assert by_check >= {"host key", "sudo", "program", "deploy_to", "linked file", "disk", "lock", "units",
                        "worker program"}
    [units] = [f for f in found if f.check == "units"]
    # A host never deployed: its units are not installed yet (they do not "differ").
    assert units.note and units.detail == "not installed yet (a deploy installs them)"
    installed = "\n".join([f"{unitfiles.SEPARATOR.strip()} shop-s@.service", "[Unit]"]) + "\n"
    differ = check.units_finding(installed, Workers(inv, "h1", app), [])
    assert differ.note and differ.detail.endswith("shop-s@.service, shop-w@.service, shop-workers.target")


def test_a_lock_held_by_a_running_deploy_is_a_problem(tmp_path: Path) -> None:
    from deploytool.commands.release import Layout
    from deploytool.engine.lock import Holder

    inv = inventory(tmp_path)
    app = inv.apps_on("h1")["shop"]
    text = "\n".join(step.command for step in check.readiness_steps(inv, "h1", app))

    def lock_finding() -> check.Finding:
        out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True).stdout
        [found] = [f for f in check.readiness(out, inv, "h1", app, 0) if f.check == "lock"]
        return found

    assert lock_finding().ok  # no deploy_to yet: nothing holds it, and nothing is created
    assert not Path(app.deploy_to).exists()
    lay = Layout(app)
    Path(app.deploy_to).mkdir()
    holder = Holder("ci", "runner-7", 4242, "abc123", "20260101000000", "2026-01-01T00:00:00+00:00")
    Path(lay.lock).write_text(holder.json() + "\n")
    with subprocess.Popen(["flock", lay.flock, "sleep", "30"], start_new_session=True) as held:
        try:
            subprocess.run(["bash", "-c", f"until ! flock -n {lay.flock} true; do sleep 0.05; done"], timeout=10,
                           check=True)
            found = lock_finding()
            assert not found.ok and found.detail == (
                "shop is being deployed now by ci@runner-7 pid 4242 since 2026-01-01T00:00:00+00:00 (release "
                "20260101000000, revision abc123): a deploy would be refused")
        finally:
            os.killpg(held.pid, signal.SIGKILL)  # flock and its sleep, which holds the lock too
    assert lock_finding().ok  # let go: free again, though its record and lock file remain


def test_installed_units_are_parsed_after_the_other_probes() -> None:
    out = "\n".join([f"{probes.MARK} current release ok", f"{unitfiles.ENV_CHANGED} shop.env",
                     unitfiles.SEPARATOR.strip("\n") + " a.service", "[Unit]", "", "[Service]",
                     unitfiles.SEPARATOR.strip("\n") + " b.target", "[Unit]"]) + "\n"
    assert unitfiles.parse_read_all(out) == ({"a.service": "[Unit]\n\n[Service]", "b.target": "[Unit]\n"},
                                             ["shop.env"])


def test_a_worker_on_another_release_than_current_is_a_problem() -> None:
    out = "\n".join([f"{rel.CURRENT} /srv/shop/releases/20260102000000",
                     f"{rel.CWD} shop-s@1.service /srv/shop/releases/20260102000000",
                     f"{rel.CWD} shop-s@2.service /srv/shop/releases/20260101000000",
                     f"{rel.CWD} shop-w@1.service "])
    [finding] = check.releases_finding(out)
    assert not finding.ok and not finding.note
    assert finding.detail == ("not on the release current points to (20260102000000): "
                              "shop-s@2.service runs release 20260101000000")
    [fine] = check.releases_finding(out.replace("20260101000000", "20260102000000"))
    assert fine.ok and fine.detail == "2 running worker(s) on the release current points to (20260102000000)"
    assert check.releases_finding(f"{rel.CURRENT} \n") == []  # never deployed: nothing to tell
def test_a_dry_run_names_what_would_make_the_deploy_fail(tmp_path: Path) -> None:
    from deploytool.commands.release import Layout

    inv = inventory(tmp_path)
    app = inv.apps_on("h1")["shop"]
    shell = LocalShell()
    problems = check.would_fail(shell, inv, "h1", app, [], 4096)  # type: ignore[arg-type]
    shared = app.shared_path
    upload = "fab config.upload --app shop --file config/{} --from PATH"
    assert f"linked file: {shared}/config/app.env: missing; upload it: {upload.format('app.env')}" in problems
    assert f"linked file: {shared}/config/master.key: missing; upload it: {upload.format('master.key')}" in problems
    assert len(shell.scripts) == 1 and not Path(app.deploy_to).exists()  # one read-only round trip
    # The rollback's dry run asks only about the lock.
    assert check.lock_held(shell, app) == []  # type: ignore[arg-type]
    Path(app.deploy_to).mkdir()
    lay = Layout(app)
    Path(lay.flock).touch()
    with subprocess.Popen(["flock", lay.flock, "sleep", "30"], start_new_session=True) as held:
        try:
            subprocess.run(["bash", "-c", f"until ! flock -n {lay.flock} true; do sleep 0.05; done"], timeout=10,
                           check=True)
            [problem] = check.lock_held(shell, app)  # type: ignore[arg-type]
            assert problem.startswith("lock: shop is being deployed now by a holder that left no record")
        finally:
            os.killpg(held.pid, signal.SIGKILL)
