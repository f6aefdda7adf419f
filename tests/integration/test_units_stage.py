"""The deploy's units stage on the sandbox: when no unit, enablement or environment file differs, it runs
no sudo and no systemctl (judged by the host: the files' mtimes, systemd's own log of reloads and sudo's
log of what it ran), and the workers still restart onto the new release; when a unit does differ, the
deploy writes and enables it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import DEPLOY_TO, back_on, fab_json, ssh, variant, wait_for, worker_units

from deploytool.kinds import KINDS

pytestmark = pytest.mark.integration

HOST = "prod-b"
# The sample app's files a units sync writes: its units and enablement links, its environment files.
FILES = ("/etc/systemd/system/sample-* /etc/systemd/system/sample-workers.target.wants/* "
         "/etc/systemd/system/multi-user.target.wants/sample-workers.target /etc/deploytool/sample/*")


def file_times() -> dict[str, str]:
    """Each of the sample app's unit, link and environment files with its mtime and inode (the deploy user
    may stat the environment files, not read them)."""
    out = ssh(HOST, f"stat -c '%n %y %i' {FILES}").stdout
    return {line.split(" ", 1)[0]: line for line in out.splitlines()}


def cursor() -> str:
    out = ssh(HOST, "sudo -n journalctl -n 0 --show-cursor --no-pager").stdout
    return out.strip().rsplit("cursor: ", 1)[1]


def since(after: str, *match: str) -> list[str]:
    """The host's journal lines after `after`, of `match` (journalctl matches or -t)."""
    out = ssh(HOST, f"sudo -n journalctl --no-pager -o cat --after-cursor '{after}' {' '.join(match)}").stdout
    return out.splitlines()


def reloads(after: str) -> list[str]:
    return [ln for ln in since(after, "_PID=1") if ln.startswith("Reloading")]


def sudo_systemctl(after: str) -> list[str]:
    """What the deploy user ran with sudo: systemctl and the sync's file commands."""
    return [ln.split("COMMAND=", 1)[1] for ln in since(after, "-t", "sudo") if "COMMAND=" in ln
            and "journalctl" not in ln]


def deploy(*args: str) -> dict[str, Any]:
    code, report = fab_json("deploy", "--host", HOST, *args)
    assert code == 0, report
    [host] = report["hosts"]
    assert host["status"] == "ok", host
    return dict(host)


def wanted_units() -> list[str]:
    return ssh(HOST, "ls /etc/systemd/system/sample-workers.target.wants").stdout.split()


def unit_count() -> int:
    out = ssh(HOST, "ls /etc/systemd/system/sample-workers.target.wants").stdout
    return len(out.split())


def test_a_deploy_with_no_unit_change_touches_no_unit_and_reloads_nothing(deployed: None) -> None:
    deploy()  # the sync's record in place, whatever deployed before
    before, mark = file_times(), cursor()
    host = deploy()
    assert file_times() == before
    assert reloads(mark) == []
    ran = sudo_systemctl(mark)
    assert not [c for c in ran if any(w in c for w in ("daemon-reload", "is-enabled", " enable", "list-units",
                                                           "/install ", "/cmp ", "/mkdir "))], ran
    assert any("systemctl stop" in c for c in ran) and any("systemctl start" in c for c in ran), ran
    # The workers still run the new release, each a new process.
    back_on(HOST, f"{DEPLOY_TO}/releases/{host['release']}", unit_count())


def test_a_deploy_with_a_changed_unit_writes_and_enables_it(deployed: None, tmp_path: Path) -> None:
    def more(data: dict[str, Any]) -> None:
        rq = data["apps"]["sample"]["workers"]["rq"]
        rq["processes"] = 3  # one more instance to enable
        rq["timeout"] = 31  # its template's TimeoutStopSec changes

    changed = variant(tmp_path, more)
    wanted = wanted_units()
    before, mark = file_times(), cursor()
    host = deploy("--inventory", changed)
    after = file_times()
    rq = "/etc/systemd/system/sample-rq@.service"
    assert after[rq] != before[rq]
    assert f"TimeoutStopSec={KINDS['rq'].timeout_stop_sec(31)}\n" in ssh(HOST, f"cat {rq}").stdout
    assert reloads(mark), "the changed unit was loaded"
    assert ssh(HOST, "systemctl is-enabled sample-rq@3.service").stdout.strip() == "enabled"
    back_on(HOST, f"{DEPLOY_TO}/releases/{host['release']}", unit_count())
    assert unit_count() == 9

    # Back to the inventory the other tests expect: the surplus instance stopped and disabled.
    mark = cursor()
    host = deploy()
    assert reloads(mark)
    assert ssh(HOST, "systemctl is-enabled sample-rq@3.service", check=False).stdout.strip() != "enabled"
    assert ssh(HOST, "systemctl is-active sample-rq@3.service", check=False).stdout.strip() != "active"
    assert unit_count() == 8
    release = f"{DEPLOY_TO}/releases/{host['release']}"
    wait_for(lambda: {u: (s, cwd) for u, (s, _, cwd) in worker_units(HOST).items() if s == "active"}
             == {u: ("active", release) for u in wanted}, 60, "the 8 wanted workers active in the new release")
