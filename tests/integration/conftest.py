"""The session's sandbox fleet: the hosts of inventories/sandbox.yml, booted once, always torn down.

Integration tests need root (namespaces, mounts, cgroups). Without root they fail with a clear message:
CI runs as root, and a skipped integration test would hide exactly what these tests exist to prove.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import APP_HOSTS, DEPLOY_TO, RABBIT_HOST, REDIS_URL, fab

from deploytool import sandbox
from deploytool.sandbox import Fleet
from deploytool.sandbox.lock import SESSION_LOCK, held
from deploytool.sandbox.services import amqp_url
from deploytool.sandbox.ssh import ssh_argv

SANDBOX_INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "integration tests boot the sandbox fleet and need root (network namespaces, overlay mounts, "
            "cgroups): run them as root, e.g. `sudo .venv/bin/pytest -m integration`",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Boot the sandbox once per session; tear it all down afterwards, also after failures or Ctrl-C.

    `fleet.ssh("prod-a", "systemctl is-active x")` runs a command as the deploy user over plain ssh with
    the sandbox key and strict host keys, returning the CompletedProcess (check=False to allow failure).
    """
    require_root()
    hosts = sandbox.load_hosts(SANDBOX_INVENTORY)
    started = time.monotonic()

    def report(name: str, message: str) -> None:  # shown with -s, or when the fixture fails
        print(f"sandbox {time.monotonic() - started:7.2f}s {name}: {message}", flush=True)

    # The sandbox is one per machine: a second test session waits here instead of tearing down ours.
    with held(SESSION_LOCK):
        try:
            sandbox.up(hosts, report)
            yield Fleet(hosts)
        finally:
            started = time.monotonic()
            sandbox.down(report)
            left = sandbox.all_traces()
            assert not left, f"sandbox.down() left: {left}"


@pytest.fixture(scope="session")
def sample_shared(fleet: Fleet) -> None:
    """The sample app's linked file, put in shared/ the way an operator provisions it once per host.

    It holds RabbitMQ's password: sent on stdin (never in an argv), written readable by the deploy user only.
    """
    env = f"REDIS_URL={REDIS_URL}\nRABBITMQ_URL={amqp_url(RABBIT_HOST)}\nSAMPLE_JOB_SECONDS=0.05\n"
    for host in APP_HOSTS:
        path = f"{DEPLOY_TO}/shared/config/app.env"
        command = f"mkdir -p {DEPLOY_TO}/shared/config && (umask 077 && cat > {path})"
        subprocess.run(ssh_argv(fleet.address(host), command), input=env, text=True, check=True, timeout=60)


@pytest.fixture(scope="session")
def deployed(sample_shared: None) -> None:
    """The sample app deployed to both app hosts, workers running."""
    r = fab("deploy", "--host", ",".join(APP_HOSTS))
    assert r.returncode == 0, r.stderr
