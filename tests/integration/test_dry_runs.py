"""`--dry-run` of the changing tasks on the sandbox fleet: each prints its plan and what it would change,
read from the host, and changes nothing: same units, same links, same worker processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import DEPLOY_TO, fab, fab_json, readlink_current, ssh, variant

pytestmark = pytest.mark.integration


def workers_state(host: str) -> str:
    """Every worker unit with its main PID, state and boot setting, the target's links, the unit files."""
    units = "systemctl list-units --all --plain --no-legend 'sample-*@*.service' | awk '{print $1}'"
    return ssh(host, f"for u in $({units}); "
                     "do echo $u $(systemctl show -p MainPID --value $u) $(systemctl is-active $u) "
                     "$(systemctl is-enabled $u); done; ls -l /etc/systemd/system/sample-workers.target.wants; "
                     "md5sum /etc/systemd/system/sample-*", check=False).stdout


def one_sidekiq(data: dict[str, Any]) -> None:
    data["hosts"]["prod-a"]["apps"]["sample"]["workers"]["sidekiq"].update(processes=1)


def with_older_release(host: str) -> tuple[str, str]:
    """The current release and the one a rollback would switch to (deploying once more if there is none)."""
    current = Path(readlink_current(host)).name
    older = [r for r in ssh(host, f"ls {DEPLOY_TO}/releases").stdout.split() if r < current]
    if not older:
        assert fab("deploy", "--host", host).returncode == 0
        return Path(readlink_current(host)).name, current
    return current, older[-1]


def test_install_and_deploy_dry_runs_name_the_instances_a_shrink_stops(deployed: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, one_sidekiq)
    before = workers_state("prod-a")
    assert "sample-sidekiq@3.service" in before and " active enabled" in before
    r = fab("workers.install", "--inventory", inv, "--host", "prod-a", "--dry-run", "--verbose")
    assert r.returncode == 0, r.stderr
    for n in (2, 3):
        assert f"sample-sidekiq@{n}.service: running, would be stopped and disabled (not wanted)" in r.stdout, r.stdout
    assert "sample-sidekiq@1.service:" not in r.stdout and "[install]" in r.stdout and "base64" not in r.stdout
    code, report = fab_json("workers.install", "--inventory", inv, "--host", "prod-a", "--dry-run")
    assert code == 0 and report["task"] == "workers.install" and report["dry_run"] is True, report
    [host] = report["hosts"]
    assert [s["stage"] for s in host["details"]["plan"]] == ["install"]
    assert "sample-sidekiq@2.service: running, would be stopped and disabled (not wanted)" in host["details"]["changes"]
    # The deploy syncs the units too: its dry run says the same.
    r = fab("deploy", "--inventory", inv, "--host", "prod-a", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "sample-sidekiq@3.service: running, would be stopped and disabled (not wanted)" in r.stdout
    assert workers_state("prod-a") == before


def test_stop_dry_run_leaves_the_workers_running(deployed: None) -> None:
    before = workers_state("prod-b")
    r = fab("workers.stop", "--host", "prod-b", "--dry-run", "--verbose")
    assert r.returncode == 0, r.stderr
    assert "sample-sidekiq@1.service: would be stopped" in r.stdout and "[stop]" in r.stdout
    assert "    sudo -n systemctl stop sample-sidekiq@1.service" in r.stdout
    assert workers_state("prod-b") == before
    assert fab("workers.status", "--host", "prod-b").returncode == 0


@pytest.mark.parametrize("task", ["workers.install", "workers.uninstall", "workers.start", "workers.stop",
                                  "workers.quiet", "workers.restart", "workers.enable", "workers.disable",
                                  "rollback"])
def test_every_changing_task_has_a_json_dry_run_that_changes_nothing(deployed: None, task: str) -> None:
    if task == "rollback":
        with_older_release("prod-b")
    before, current = workers_state("prod-b"), readlink_current("prod-b")
    extra = ["--group", "sidekiq"] if task == "workers.quiet" else []
    code, report = fab_json(task, "--host", "prod-b", "--dry-run", *extra)
    assert code == 0 and report["task"] == task and report["dry_run"] is True and report["ok"], report
    [host] = report["hosts"]
    assert host["host"] == "prod-b" and host["details"]["plan"], host
    assert workers_state("prod-b") == before and readlink_current("prod-b") == current


def test_rollback_dry_run_says_which_release_would_become_current(deployed: None) -> None:
    current, older = with_older_release("prod-a")
    r = fab("rollback", "--host", "prod-a", "--dry-run", "--verbose")
    assert r.returncode == 0, r.stderr
    assert f"current: {current} -> {older} (" in r.stdout, r.stdout
    for stage in ("[lock]", "[check]", "[switch]", "[units]", "[restart]", "[log]", "[unlock]"):
        assert stage in r.stdout
    assert readlink_current("prod-a") == f"{DEPLOY_TO}/releases/{current}"
