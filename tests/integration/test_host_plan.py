"""The host runs its own plan: a deploy whose controller is killed (or whose link goes down) at any stage
boundary leaves the host whole without any rerun: every worker active, none quiet, each worker process
on the release `current` points to, no partial release, the lock free; the host's record says what
happened; and the next deploy succeeds.

Judged on the hosts: what systemd says, each main process's working directory (/proc/PID/cwd), the
releases directory, the lock file. Hook points are the progress lines `fab` prints as each stage ends."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import DEPLOY_TO, fab, fab_json, ssh, variant, wait_for
from test_field import KEEPALIVE, converged, deploy_when_free, fab_running, fast, link_down, wait_line

pytestmark = pytest.mark.integration

# Every stage boundary of a deploy, from the check to the cleanup.
STAGES = ["check", "lock", "upload", "code", "shared", "switch", "units", "quiet", "restart", "cleanup"]
# Stages after which the deploy commits: `quiet` is reported done once the restart, in the same script,
# has begun, which the host then finishes; after `restart` the host finishes the cleanup and the log.
COMMITTED = {"quiet", "restart", "cleanup"}
SETTLE = 30.0  # what the issue allows the host: 30 s after the controller is gone


def runner_gone(host: str) -> bool:
    """No plan runner left on the host (its argv names the program it runs)."""
    return ssh(host, "pgrep -f deploytool-runner", check=False).returncode == 1


def settled(host: str, timeout: float = SETTLE) -> None:
    wait_for(lambda: runner_gone(host) and ssh(host, f"test -e {DEPLOY_TO}/.deploy.lock",
                                                  check=False).returncode == 1, timeout, f"{host} to settle")


def whole(host: str) -> str:
    """Asserts the host is whole; returns the release `current` points to."""
    current = ssh(host, f"readlink -f {DEPLOY_TO}/current").stdout.strip()
    release = Path(current).name
    # No partial release: every release is complete, none is newer than current, no archive left; the
    # lock free. One round trip for all of it.
    listing = ssh(host, f"cd {DEPLOY_TO}/releases && for r in $(ls -1A); do "
                        "printf '%s %s\\n' \"$r\" \"$(test -s $r/REVISION && echo complete)\"; done; "
                        f"test -e {DEPLOY_TO}/.deploy.lock && echo LOCKED; true").stdout.splitlines()
    assert "LOCKED" not in listing, listing
    names = [line.split()[0] for line in listing]
    assert all(line.endswith(" complete") for line in listing), listing
    assert all(not name.endswith(".tar.gz") for name in names) and max(names) == release, (names, release)
    # Every worker unit the inventory wants active, none quiet (as Sidekiq itself records its processes),
    # each main process started in the release current points to; and workers.status agrees.
    code, report = fab_json("workers.status", "--host", host)
    assert code == 0, report["errors"]
    units = [u["unit"] for u in report["units"] if "@" in u["unit"]]
    assert units, report["units"]
    assert not [u["unit"] for u in report["units"] if u.get("quiet")], report["units"]
    assert all(u["release"] in (None, release) for u in report["units"]), report["units"]
    seen = ssh(host, "for u in " + " ".join(units) + "; do "
                     "printf '%s %s %s\\n' \"$u\" \"$(systemctl is-active $u)\" "
                     "\"$(readlink /proc/$(systemctl show --property=MainPID --value $u)/cwd)\"; done"
               ).stdout.splitlines()
    assert [line.split(" ", 2)[1:] for line in seen] == [["active", current]] * len(units), seen
    return release


def record(host: str) -> dict[str, Any]:
    text = ssh(host, f"cat {DEPLOY_TO}/.deploy.last", check=False).stdout
    return json.loads(text) if text.strip() else {}


@pytest.mark.parametrize("after", STAGES)
def test_controller_killed_after_any_stage_leaves_the_host_whole(deployed: None, after: str) -> None:
    host = "prod-b"
    before = ssh(host, f"readlink -f {DEPLOY_TO}/current").stdout.strip()
    with fab_running("deploy", "--host", host) as proc:
        wait_line(proc, host, after)
        os.killpg(proc.pid, signal.SIGKILL)  # a CI runner that is killed
    settled(host)
    release = whole(host)
    if after in COMMITTED:
        assert release != Path(before).name, "a committed deploy is finished by the host"
    else:
        assert release == Path(before).name, "the host went back to the release it had"
    if after not in ("check", "cleanup"):  # before the lock there is no record; after the cleanup it may be done
        last = record(host)
        assert last["state"] == "abandoned", last
        if after not in COMMITTED:
            assert last["did"].startswith("put itself back"), last
            # `fab releases` tells a person what happened.
            r = fab("releases", "--host", host)
            assert "was abandoned at stage" in r.stdout, r.stdout
    report = deploy_when_free("--host", host)
    converged(host, report["hosts"][0]["release"])


def test_link_down_after_the_switch_the_host_puts_itself_back(deployed: None, tmp_path: Path) -> None:
    host = "prod-b"
    inv = variant(tmp_path, fast)
    before = ssh(host, f"readlink -f {DEPLOY_TO}/current").stdout.strip()
    with fab_running("deploy", "--inventory", inv, "--host", host) as proc:
        wait_line(proc, host, "switch")
        with link_down(host):
            assert proc.wait(timeout=120) == 1  # the controller gives up, bounded
            # The link stays down well past the runner's heartbeat bound (4 keepalives).
            time.sleep(KEEPALIVE * 4 * 3)
    settled(host)
    # The host restarted its workers while its link was down: they reach their brokers again once it is
    # back (a Celery node consumes nothing until then, which its system reports as quiet).
    wait_for(lambda: not [u for u in fab_json("workers.status", "--host", host)[1]["units"] if u.get("quiet")],
             60, "the workers to reach their brokers again")
    assert whole(host) == Path(before).name
    last = record(host)
    assert last["state"] == "abandoned" and "no heartbeat" in last["reason"], last
    report = deploy_when_free("--inventory", inv, "--host", host)
    converged(host, report["hosts"][0]["release"])


def test_rolling_deploy_killed_while_a_host_waits_at_the_gate(deployed: None) -> None:
    befores = {h: ssh(h, f"readlink -f {DEPLOY_TO}/current").stdout.strip() for h in ("prod-a", "prod-b")}
    with fab_running("deploy", "--host", "prod-a,prod-b") as proc:
        assert proc.stderr is not None
        units_done: set[str] = set()
        restarting = ""
        for line in proc.stderr:
            words = line.split()
            if len(words) >= 4 and words[3] == "ok" and words[0] in befores:
                if words[2] == "units":
                    units_done.add(words[0])
                elif words[2] == "quiet" and not restarting:
                    restarting = words[0]  # this host holds the gate
            if restarting and units_done == set(befores):
                break
        else:
            raise AssertionError("fab ended before one host restarted while the other waited")
        os.killpg(proc.pid, signal.SIGKILL)
    waiting = next(h for h in befores if h != restarting)
    for h in befores:
        settled(h)
    # The host at the gate went back to its old release, its workers running it.
    assert whole(waiting) == Path(befores[waiting]).name
    whole(restarting)
    report = deploy_when_free("--host", "prod-a,prod-b")
    for h in report["hosts"]:
        converged(h["host"], h["release"])
