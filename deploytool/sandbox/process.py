"""Finding and waiting for the processes behind a host, without polling loops.

Waiting uses pidfds: the kernel wakes us when the process exits, whoever its parent is (launchers are
detached, so they are not our children and `waitpid` cannot be used).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from deploytool.sandbox import cgroup

LAUNCHER_MODULE = "deploytool.sandbox.launcher"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def nspawn_pids(host_name: str) -> list[int]:
    return sorted(p for p in cgroup.pids(host_name) if comm(p) == "systemd-nspawn")


def launcher_pids(host_name: str) -> list[int]:
    return sorted(p for p in cgroup.pids(host_name) if LAUNCHER_MODULE in cmdline(p))


def send(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile: what we wanted
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    """Wait until every pid has exited; False if some are still there at the timeout."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    fds: dict[int, int] = {}
    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            fds[fd] = pid
            poller.register(fd, select.POLLIN)
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for fd, _event in poller.poll(left * 1000):
                poller.unregister(fd)
                os.close(fd)
                del fds[fd]
        return True
    finally:
        for fd in fds:
            os.close(fd)
