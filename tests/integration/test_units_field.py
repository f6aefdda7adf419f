"""Worker units in the field: the sample app's real workers on the sandbox fleet, with the real Redis.

Power cut, Redis back 45 s after a worker host rebooted: systemd alone must bring every worker back
once Redis returns, however many times they failed before; their restarts stay visible in status.
A worker runs as the deploy user, never root, sandboxed: it writes shared/, not its release."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import client, fab, fab_json, ssh, variant, wait_for

pytestmark = pytest.mark.integration

# The scenario: how long Redis stays down after the worker host rebooted, and the bound within which
# every worker must be back and working once it returns.
REDIS_DOWN_AFTER_REBOOT = 45.0
BACK_WITHIN = 60.0


def _units(host: str) -> dict[str, dict[str, Any]]:
    _, data = fab_json("workers.status", "--host", host)
    return {u["unit"]: u for u in data["units"] if "@" in u["unit"]}


def _all_active(host: str) -> bool:
    units = _units(host)
    return bool(units) and all(u["active"] == "active" for u in units.values())


def test_workers_come_back_when_redis_returns_after_boot(deployed: None, fleet: Any) -> None:
    ssh("redis-a", "sudo systemctl stop redis-server")
    try:
        fleet.reboot("prod-b")
        rebooted = time.monotonic()
        # The workers cannot start without Redis: they fail and are restarted, again and again.
        wait_for(lambda: sum(u["restarts"] for u in _units("prod-b").values()) >= 4, REDIS_DOWN_AFTER_REBOOT,
                 "prod-b's workers to fail and be restarted while Redis is down")
        assert not _all_active("prod-b")
        # The rest of the 45 s outage is the scenario itself, not a wait for something.
        time.sleep(max(0.0, REDIS_DOWN_AFTER_REBOOT - (time.monotonic() - rebooted)))
        failed = ssh("prod-b", "systemctl list-units --plain --no-legend --state=failed 'sample-*'").stdout
        assert failed.strip() == "", f"workers gave up while Redis was down: {failed}"
    finally:
        ssh("redis-a", "sudo systemctl start redis-server")
    back = time.monotonic()
    # No deploytool command, no systemctl: systemd's restarts alone bring them back.
    wait_for(lambda: _all_active("prod-b"), BACK_WITHIN, "every prod-b worker active after Redis returned")
    # Crash loops stay visible: each unit whose worker exits without Redis (Sidekiq, RQ) counts its
    # restarts. Celery on Redis waits for its broker in-process; the RabbitMQ kinds start without Redis.
    units = _units("prod-b")
    crashing = [u for name, u in units.items() if name.startswith(("sample-sidekiq@", "sample-rq@"))]
    assert len(crashing) == 4 and all(u["restarts"] >= 1 for u in crashing), units
    # prod-a's workers are stopped, so these jobs can only be done by prod-b's.
    code, _ = fab_json("workers.stop", "--host", "prod-a")
    assert code == 0
    try:
        for kind in ("sidekiq", "rq"):
            client("reset", kind)
            client("enqueue", kind, "--count", "20")
        left = BACK_WITHIN - (time.monotonic() - back)
        for kind in ("sidekiq", "rq"):
            c = client("count", kind, "--wait", str(max(left, 1.0)))
            assert c["missing"] == 0, c
    finally:
        code, _ = fab_json("workers.start", "--host", "prod-a")
        assert code == 0


# A worker of kind `command` that reports what it may touch, then keeps running.
PROBE = """
import json, os, subprocess, time
def can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return True
    except OSError:
        return False
sudo = subprocess.run(["sudo", "-n", "/usr/bin/systemctl", "--version"], capture_output=True)
report = {
    "uid": os.getuid(), "app_env": os.environ.get("APP_ENV"),
    "shared": can_write("/srv/sample/shared/log/probe-w"), "release": can_write("/srv/sample/current/probe-w"),
    "etc": can_write("/etc/probe-w"), "home": can_write("/home/deploy/probe-w"), "tmp": can_write("/tmp/probe-w"),
    "sudo": sudo.returncode,
}
with open("/srv/sample/shared/log/probe.json", "w") as f:
    json.dump(report, f)
time.sleep(1e6)
"""


def test_a_worker_is_confined_to_shared_and_never_root(deployed: None, tmp_path: Path) -> None:
    program = "/srv/sample/shared/probe.py"

    def with_probe(d: dict[str, Any]) -> None:
        d["apps"]["sample"]["workers"]["probe"] = {"kind": "command", "command": ["/usr/bin/python3", program]}

    inv = variant(tmp_path, with_probe)
    ssh("prod-a", f"rm -f /srv/sample/shared/log/probe.json && cat > {program} <<'EOF'\n{PROBE}\nEOF")
    try:
        assert fab("workers.install", "--inventory", inv, "--host", "prod-a").returncode == 0
        assert fab("workers.start", "--inventory", inv, "--host", "prod-a", "--group", "probe").returncode == 0
        read = lambda: ssh("prod-a", "cat /srv/sample/shared/log/probe.json", check=False)  # noqa: E731
        wait_for(lambda: read().returncode == 0, 30, "the probe worker's report")
        report = json.loads(read().stdout)
        uid = int(ssh("prod-a", "id -u deploy").stdout)
        # The host's SSH user, not root; the inventory's environment reached it from the env file.
        assert report["uid"] == uid and report["app_env"] == "production", report
        assert ssh("prod-a", "systemctl show -p User --value sample-probe@1.service").stdout.strip() == "deploy"
        # Writes only to shared/ and its private /tmp; not its release, /etc or a home; no sudo.
        assert (report["shared"], report["tmp"]) == (True, True), report
        assert (report["release"], report["etc"], report["home"]) == (False, False, False), report
        assert report["sudo"] != 0, report
        # The sample app's real workers run under the same sandboxing.
        code, status = fab_json("workers.status", "--host", "prod-a")
        assert code == 0, status
    finally:
        assert fab("workers.install", "--host", "prod-a").returncode == 0
        ssh("prod-a", f"rm -f {program} /srv/sample/shared/log/probe.json")
    assert ssh("prod-a", "ls /etc/systemd/system | grep -c probe", check=False).stdout.strip() == "0"
