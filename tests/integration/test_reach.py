"""Reaching every host the user names, and only those: hosts behind a jump host, a host whose disk
fills up, Fabric's own `-H`, a controller whose clock is behind. Judged on the hosts."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import DEPLOY_TO, FAB, ROOT, fab, fab_json, readlink_current, ssh, variant

from deploytool.sandbox import KNOWN_HOSTS, Fleet

pytestmark = pytest.mark.integration

JUMP = "redis-a"
FROM_CONTROLLER = "Accepted publickey for deploy from 10.213.0.1 "


def jumps(**behind: str) -> Any:
    """An inventory change: each host given reached through the jump host named."""

    def mutate(data: dict[str, Any]) -> None:
        for host, jump in behind.items():
            data["hosts"][host]["jump"] = jump

    return mutate


@contextmanager
def firewalled(fleet: Fleet, **behind: str) -> Iterator[None]:
    """Each host given reachable over SSH only from its jump host, while the block runs."""
    with ExitStack() as stack:
        for host, jump in behind.items():
            stack.enter_context(fleet.behind(host, jump))
        yield


def on_host(fleet: Fleet, host: str, command: str, via: tuple[str, ...] = (JUMP,)) -> str:
    """A command's output on a host behind a jump host, over plain ssh through it (strict keys)."""
    return fleet.ssh(host, command, via=via).stdout


def workers(fleet: Fleet, host: str, via: tuple[str, ...] = ()) -> dict[str, tuple[str, str]]:
    """unit -> (MainPID, active state) of every sample worker on the host."""
    out = fleet.ssh(host, "for u in $(systemctl list-units --plain --no-legend 'sample-*@*.service' "
                          "| awk '{print $1}'); do echo $u $(systemctl show -p MainPID --value $u) "
                          "$(systemctl is-active $u); done", via=via).stdout
    return {u: (pid, state) for u, pid, state in (line.split() for line in out.splitlines())}


def accepted_from_controller(fleet: Fleet, host: str) -> int:
    """SSH logins from the controller the host's sshd has accepted so far (this one included)."""
    out = fleet.ssh(host, "sudo -n journalctl -u ssh.service -o cat --no-pager").stdout
    return out.count(FROM_CONTROLLER)


# --- jump hosts ----------------------------------------------------------------------------------


def test_host_behind_a_jump_host_is_deployed_and_run_through_it(deployed: None, fleet: Fleet,
                                                                tmp_path: Path) -> None:
    inventory = variant(tmp_path, jumps(**{"prod-a": JUMP}))
    with firewalled(fleet, **{"prod-a": JUMP}):
        # The firewall is real: without the jump, prod-a cannot be reached.
        direct = fab("workers.status", "--host", "prod-a")
        assert direct.returncode == 1, direct.stdout + direct.stderr
        assert "prod-a: connect to deploy@10.213.0.11:22: timed out" in direct.stdout + direct.stderr

        before = on_host(fleet, "prod-a", f"readlink {DEPLOY_TO}/current").strip()
        r = fab("deploy", "--host", "prod-a", "--inventory", inventory, "--dry-run")
        assert r.returncode == 0, r.stderr
        assert on_host(fleet, "prod-a", f"readlink {DEPLOY_TO}/current").strip() == before

        code, report = fab_json("deploy", "--host", "prod-a", "--inventory", inventory)
        assert code == 0, report
        after = on_host(fleet, "prod-a", f"readlink {DEPLOY_TO}/current").strip()
        assert after != before and after == f"{DEPLOY_TO}/releases/{report['hosts'][0]['release']}"
        running = workers(fleet, "prod-a", via=(JUMP,))
        assert running and all(state == "active" for _, state in running.values()), running

        r = fab("workers.status", "--host", "prod-a", "--inventory", inventory)
        assert r.returncode == 0, r.stdout + r.stderr
        r = fab("run", "--host", "prod-a", "--inventory", inventory, "--", "hostname")
        assert r.returncode == 0 and r.stdout.strip() == "prod-a", r.stdout + r.stderr


def test_one_connection_to_the_jump_host_serves_every_host_behind_it(deployed: None, fleet: Fleet,
                                                                     tmp_path: Path) -> None:
    behind = {"prod-a": JUMP, "prod-b": JUMP}
    inventory = variant(tmp_path, jumps(**behind))
    with firewalled(fleet, **behind):
        before = accepted_from_controller(fleet, JUMP)
        # Both hosts at once (the redis check reads through one of them first), then the workers' status.
        code, report = fab_json("deploy", "--inventory", inventory, "--parallel", "2", "--batch", "2")
        assert code == 0, report
        assert sorted(h["host"] for h in report["hosts"]) == ["prod-a", "prod-b"]
        # This count's own login is the one more.
        assert accepted_from_controller(fleet, JUMP) - before == 2
        for host in behind:
            assert readlink_current_via(fleet, host) == f"{DEPLOY_TO}/releases/{report['hosts'][0]['release']}"


def readlink_current_via(fleet: Fleet, host: str) -> str:
    return on_host(fleet, host, f"readlink {DEPLOY_TO}/current").strip()


def test_a_chain_of_jump_hosts(deployed: None, fleet: Fleet, tmp_path: Path) -> None:
    """prod-a only from redis-a, redis-a only from rabbit-a: prod-a is reached through both."""
    behind = {"prod-a": JUMP, JUMP: "rabbit-a"}
    inventory = variant(tmp_path, jumps(**behind))
    with firewalled(fleet, **behind):
        r = fab("workers.status", "--host", "prod-a", "--inventory", inventory)
        assert r.returncode == 0, r.stdout + r.stderr
        r = fab("run", "--host", "prod-a", "--inventory", inventory, "--", "hostname")
        assert r.returncode == 0 and r.stdout.strip() == "prod-a", r.stdout + r.stderr
        assert on_host(fleet, "prod-a", "hostname", via=("rabbit-a", JUMP)).strip() == "prod-a"


def known_hosts_with(tmp_path: Path, address: str, key_of: str) -> str:
    """The sandbox's known_hosts, with `address`'s keys replaced by the keys of host `key_of`."""
    lines = KNOWN_HOSTS.read_text().splitlines()
    wrong = [ln.split(" ", 1)[1] for ln in lines if key_of in ln.split(" ", 1)[0].split(",")]
    kept = [ln for ln in lines if address not in ln.split(" ", 1)[0].split(",")]
    path = tmp_path / f"known_hosts-{address}"
    path.write_text("\n".join([*kept, *(f"{address} {k}" for k in wrong)]) + "\n")
    return str(path)


@pytest.mark.parametrize("wrong", [JUMP, "prod-a"])
def test_a_wrong_host_key_on_any_hop_refuses(deployed: None, fleet: Fleet, tmp_path: Path, wrong: str) -> None:
    address = fleet.address(wrong)
    known = known_hosts_with(tmp_path, address, key_of="prod-b")

    def mutate(data: dict[str, Any]) -> None:
        jumps(**{"prod-a": JUMP})(data)
        data["hosts"][wrong]["known_hosts"] = known

    inventory = variant(tmp_path, mutate)
    before = on_host(fleet, "prod-a", "systemctl show -p MainPID --value sample-sidekiq@1.service", via=())
    code, report = fab_json("workers.restart", "--host", "prod-a", "--inventory", inventory)
    assert code == 1, report
    [entry] = report["hosts"]
    assert f"host key MISMATCH for {address}" in entry["error"], entry["error"]
    if wrong == JUMP:
        assert entry["error"].startswith(f"prod-a: jump host {JUMP}: connect to deploy@{address}:22"), entry["error"]
    else:
        assert f"through jump host {JUMP}" in entry["error"], entry["error"]
    # Nothing was done on prod-a: its workers were not restarted.
    assert on_host(fleet, "prod-a", "systemctl show -p MainPID --value sample-sidekiq@1.service", via=()) == before


def test_an_unreachable_jump_host_fails_the_hosts_behind_it_within_the_connect_bound(tmp_path: Path,
                                                                                    fleet: Fleet) -> None:
    def mutate(data: dict[str, Any]) -> None:
        # An address on the sandbox bridge where no host answers.
        data["hosts"]["bastion"] = {**data["hosts"][JUMP], "address": "10.213.0.99", "roles": [],
                                    "connect_timeout": 2.0}
        jumps(**{"prod-a": "bastion", "prod-b": "bastion"})(data)

    inventory = variant(tmp_path, mutate)
    began = time.monotonic()
    code, report = fab_json("workers.status", "--inventory", inventory, "--host", "prod-a,prod-b")
    took = time.monotonic() - began
    assert code == 1
    for entry in report["hosts"]:
        assert entry["status"] == "failed"
        assert entry["error"].startswith(f"{entry['host']}: jump host bastion: connect to deploy@10.213.0.99:22"), \
            entry["error"]
    # Both hosts share the one attempt: one connect bound (2 s) and fab's start, not one per host.
    assert took < 15, took


# --- Fabric's -H ---------------------------------------------------------------------------------


def test_fabric_hosts_flag_deploys_the_named_host_only(deployed: None, fleet: Fleet) -> None:
    a_before, b_before = readlink_current("prod-a"), readlink_current("prod-b")
    b_workers = workers(fleet, "prod-b")
    r = fab("-H", "prod-a", "deploy")
    assert r.returncode == 0, r.stderr
    assert readlink_current("prod-a") != a_before
    assert readlink_current("prod-b") == b_before
    assert workers(fleet, "prod-b") == b_workers  # not restarted


# --- a controller whose clock is behind ---------------------------------------------------------


def release_names(host: str) -> list[str]:
    return sorted(ssh(host, f"ls -1 {DEPLOY_TO}/releases").stdout.split())


def test_a_controller_an_hour_behind_still_makes_the_newest_release(deployed: None) -> None:
    host = "prod-b"
    newest = release_names(host)[-1]
    assert readlink_current(host) == f"{DEPLOY_TO}/releases/{newest}"
    # A clock an hour behind is CLOCK_REALTIME's; libfaketime also shifts CLOCK_MONOTONIC by default, and
    # then every timed wait of Python's threads hangs (the keepalive's among them: the host looked lost
    # once a deploy took over 15 s).
    r = subprocess.run(["faketime", "-f", "-1h", str(FAB), "-r", str(ROOT), "deploy", "--host", host],
                       capture_output=True, text=True, timeout=600, check=False,
                       env={**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    assert r.returncode == 0, r.stderr
    made = release_names(host)[-1]
    assert made > newest, (made, newest)
    assert readlink_current(host) == f"{DEPLOY_TO}/releases/{made}"
    r = fab("rollback", "--host", host)
    assert r.returncode == 0, r.stderr
    assert readlink_current(host) == f"{DEPLOY_TO}/releases/{newest}"


# --- a disk that fills up ------------------------------------------------------------------------

TIGHT = "/srv/tight"


def tight_app(data: dict[str, Any]) -> None:
    """An app with one worker of its own whose deploy_to is the small disk, on prod-b only."""
    sample = data["apps"]["sample"]
    data["hosts"]["prod-b"]["roles"] = [*data["hosts"]["prod-b"]["roles"], "tight"]
    data["apps"]["tight"] = {"roles": ["tight"], "source": sample["source"], "deploy_to": TIGHT, "keep_releases": 3,
                             "workers": {"sleeper": {"kind": "command", "command": ["/bin/sleep", "infinity"]}}}


def tight_state() -> dict[str, str]:
    """What a failed deploy must leave as it was: current, the releases, the worker, no archive or lock."""
    out = ssh("prod-b", f"cd {TIGHT} && readlink current; ls -1a releases | tr '\\n' ' '; echo; "
                        "systemctl show -p MainPID --value tight-sleeper@1.service; "
                        "systemctl is-active tight-sleeper@1.service; ls -1a | tr '\\n' ' '").stdout
    current, listing, pid, active, top = out.splitlines()
    return {"current": current, "releases": listing, "pid": pid, "active": active, "top": top}


def fill(leave_kib: int) -> None:
    """Fill the small disk until `leave_kib` KiB are free."""
    free = int(ssh("prod-b", f"df -Pk {TIGHT} | awk 'NR==2 {{print $4}}'").stdout)
    ssh("prod-b", f"head -c {(free - leave_kib) * 1024} /dev/zero > {TIGHT}/filler")


@pytest.fixture
def tight(deployed: None, fleet: Fleet, tmp_path: Path) -> Iterator[str]:
    """The tight app deployed once on a 1 MiB disk of its own on prod-b (its worker running); its
    inventory. Afterwards its units are removed and the disk unmounted, also when the test fails."""
    inventory = variant(tmp_path, tight_app)
    uid, gid = (int(x) for x in ssh("prod-b", "id -u; id -g").stdout.split())
    with fleet.small_disk("prod-b", TIGHT, 1024, (uid, gid)):
        try:
            r = fab("deploy", "--inventory", inventory, "--app", "tight", "--host", "prod-b")
            assert r.returncode == 0, r.stderr
            yield inventory
        finally:
            ssh("prod-b", f"rm -f {TIGHT}/filler", check=False)
            fab("workers.uninstall", "--inventory", inventory, "--app", "tight", "--host", "prod-b")


def test_fab_check_warns_when_the_disk_holds_less_than_two_releases(tight: str) -> None:
    release_kib = int(ssh("prod-b", f"du -sk $(readlink -f {TIGHT}/current) | cut -f1").stdout.split()[0])
    # Room for a deploy (the upload and a release), not for two releases.
    fill(release_kib + 20 + release_kib // 2)
    r = fab("check", "--inventory", tight, "--app", "tight", "--host", "prod-b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is below two releases" in r.stdout, r.stdout
    ssh("prod-b", f"rm -f {TIGHT}/filler")
    r = fab("check", "--inventory", tight, "--app", "tight", "--host", "prod-b")
    assert r.returncode == 0 and "is below two releases" not in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize(("leave_kib", "stage"), [(4, "upload"), (16, "code")])
def test_a_deploy_that_fills_the_disk_fails_cleanly(tight: str, leave_kib: int, stage: str) -> None:
    """Room for the lock's record only (the upload fails), or for the upload too (unpacking fails)."""
    fill(leave_kib)
    before = tight_state()
    assert before["active"] == "active", before
    code, report = fab_json("deploy", "--inventory", tight, "--app", "tight", "--host", "prod-b")
    assert code == 1, report
    [entry] = report["hosts"]
    failed = [s["name"] for s in entry["stages"] if s["status"] == "failed" and ":" not in s["name"]]
    assert failed == [stage], entry["stages"]
    assert "no space left" in entry["error"].lower() and TIGHT in entry["error"], entry["error"]
    # Nothing it unpacked is left, current and the worker are as they were.
    assert tight_state() == before
