"""Bringing many sandbox hosts up, down and through reboots.

`up` is idempotent: running hosts are left alone, and leftovers of a crashed run (a namespace, a mount
or a cgroup without a live launcher) are removed first. `down` removes every sandbox host on the
machine, then the bridge and the state dir. All waits are for events (process exit via pidfd, an ssh
answer), never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from deploytool.errors import HostError, InputError
from deploytool.sandbox import cgroup, host, network, process, services
from deploytool.sandbox.layout import HOSTS_DIR, STATE_DIR, HostPaths
from deploytool.sandbox.lock import held
from deploytool.sandbox.run import run
from deploytool.sandbox.spec import SandboxHost, sandbox_host
from deploytool.sandbox.ssh import ensure_client_key, ssh_argv, write_known_hosts

Report = Callable[[str, str], None]
"""Progress callback: (host name, one short line)."""

INOTIFY_LIMITS = {"fs.inotify.max_user_instances": 8192, "fs.inotify.max_user_watches": 1048576}
READY_STATES = ("running", "degraded")
SSH_FAILED = 255
BOOT_TIMEOUT = 240.0  # generous: under full CPU load a first login can stall while user@.service starts
STOP_TIMEOUT = 60.0

T = TypeVar("T")


def _silent(_name: str, _message: str) -> None:
    pass


def _each(hosts: Sequence[T], action: Callable[[T], None], name_of: Callable[[T], str]) -> None:
    """Run action for every host in parallel; raise one HostError naming every host that failed."""
    if not hosts:
        return
    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        futures = [(item, pool.submit(action, item)) for item in hosts]
    failed = [f"{name_of(item)}: {f.exception()}" for item, f in futures if f.exception() is not None]
    if failed:
        raise HostError("; ".join(failed))


def require_root() -> None:
    if os.geteuid() != 0:
        raise InputError("the sandbox needs root (network namespaces, overlay mounts, cgroups)")


def raise_inotify_limits() -> None:
    """About 30 hosts exhaust the default 128 inotify instances; units then fail with odd errors."""
    for key, wanted in INOTIFY_LIMITS.items():
        current = int(run(["sysctl", "-n", key]).stdout)
        if current < wanted:
            run(["sysctl", "-q", "-w", f"{key}={wanted}"])


# --- what exists ---------------------------------------------------------------------------------


def _read_record(name: str) -> SandboxHost | None:
    record = HostPaths(name).record
    if not record.exists():
        return None
    data = json.loads(record.read_text())
    return sandbox_host(data["name"], data["address"], data["roles"])


def recorded_hosts() -> list[SandboxHost]:
    """Hosts with a state dir, as recorded when they were created."""
    found = (_read_record(p.parent.name) for p in sorted(HOSTS_DIR.glob("*/host.json")))
    return [h for h in found if h is not None]


def known_host_names() -> set[str]:
    """Every host the sandbox has any trace of: state dir, namespace or cgroup."""
    names = {p.name for p in HOSTS_DIR.iterdir()} if HOSTS_DIR.exists() else set()
    return names | set(network.sandbox_namespaces()) | cgroup.host_names()


def is_running(name: str) -> bool:
    return bool(process.launcher_pids(name))


def _record(h: SandboxHost) -> None:
    data = {"name": h.name, "address": h.address, "roles": list(h.roles)}
    HostPaths(h.name).record.write_text(json.dumps(data) + "\n")


def _refresh_known_hosts() -> None:
    write_known_hosts(line for h in recorded_hosts() for line in host.host_key_lines(HostPaths(h.name), h))


# --- one host ------------------------------------------------------------------------------------


def _create(h: SandboxHost, peers: Sequence[SandboxHost], authorized_key: str) -> None:
    paths = HostPaths(h.name)
    network.add_host(h)
    host.create_disk(paths)
    _record(h)
    host.prepare_root(paths.root, h, peers, authorized_key)


def _start(h: SandboxHost) -> None:
    paths = HostPaths(h.name)
    argv = [
        "setsid", "-f",  # its own session, reparented away from us: it outlives `fab sandbox.up`
        sys.executable, "-m", process.LAUNCHER_MODULE,
        h.name, str(paths.root), str(network.netns_path(h.name)),
    ]  # fmt: skip
    with paths.console.open("ab") as log:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=True)


def _stop(name: str) -> None:
    """Power the host off (SIGTERM to its launcher, which forwards it to systemd-nspawn) and wait."""
    launchers = process.launcher_pids(name)
    nspawns = process.nspawn_pids(name)
    if launchers or nspawns:
        # Without a launcher (it was killed), signal systemd-nspawn directly: it powers off the host too.
        process.send(launchers or nspawns, signal.SIGTERM)
        process.wait_gone(launchers + nspawns, STOP_TIMEOUT)
    # Left now: a host orphaned by a killed systemd-nspawn, or one that would not power off.
    # SIGKILL to its PID 1 ends its whole PID namespace; the rest are killed for good measure.
    left = cgroup.pids(name)
    if left:
        process.send(left, signal.SIGKILL)
        if not process.wait_gone(left, STOP_TIMEOUT):
            raise HostError(f"processes left in the host's cgroup: {sorted(cgroup.pids(name))}")


def remove_host(name: str) -> None:
    """Everything of one host, in the order that frees each piece: processes, mount, netns, disk, cgroup."""
    paths = HostPaths(name)
    recorded = _read_record(name)
    _stop(name)
    host.unmount(paths)
    network.remove_host(name, network.veth_name(recorded) if recorded else None)
    host.remove_state(paths)
    cgroup.remove(name)


def wait_ready(h: SandboxHost, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until `systemctl is-system-running --wait` over ssh says running/degraded; return that."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last = ""
    argv = ssh_argv(h.address, "systemctl is-system-running --wait", connect_timeout=5)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HostError(f"not ready after {timeout:g}s (last answer: {last or 'none'})")
        try:
            result = run(argv, check=False, timeout=left)
        except HostError:
            continue  # the timeout: the loop test raises with the last answer
        state = result.stdout.strip()
        if state in READY_STATES:
            return state
        last = state or next(iter(result.stderr.strip().splitlines()[-1:]), "")
        # sshd not listening yet (refused at once) or the host still shutting down: retry soon.
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def wait_services(h: SandboxHost, started: float, report: Report, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until each service of the host's roles answers its own readiness check; report how long
    after `started` (a time.monotonic()) it did. RabbitMQ (Erlang) can take long to boot on 2 busy cores."""
    deadline = started + timeout
    for service in services.of(h):
        if service.ready is None:
            continue
        argv = ssh_argv(h.address, service.ready, connect_timeout=5)
        delay = 0.2
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostError(f"{service.role} not ready {timeout:g}s after boot ({service.ready})")
            with contextlib.suppress(HostError):  # a check that hangs counts as not ready yet
                if run(argv, check=False, timeout=left).returncode == 0:
                    break
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        report(h.name, f"{service.role} ready {time.monotonic() - started:.1f}s after boot")


def _ready_line(h: SandboxHost, state: str) -> str:
    if state == "running":
        return "ready"
    failed = run(ssh_argv(h.address, "systemctl --failed --plain --no-legend"), check=False).stdout.split()
    units = [u for u in failed if "." in u and not u.startswith("●")]
    return f"ready (degraded: {', '.join(units) or 'see systemctl --failed'})"


# --- the fleet -----------------------------------------------------------------------------------


def up(hosts: Sequence[SandboxHost], report: Report = _silent, timeout: float = BOOT_TIMEOUT) -> None:
    """Boot hosts that are not running (cleaning leftovers first) and wait until all are ready."""
    require_root()
    with held():
        _up(hosts, report, timeout)


def _up(hosts: Sequence[SandboxHost], report: Report, timeout: float) -> None:
    wanted = {h.name: h for h in hosts}
    recorded = {h.name: h for h in recorded_hosts()}
    for other in recorded.values():
        clash = next((h for h in hosts if h.address == other.address and h.name != other.name), None)
        if clash and is_running(other.name):
            raise InputError(f"host {clash.name}: address {clash.address} is in use by host {other.name}")
    raise_inotify_limits()

    # Leftovers: any trace of a host without a live launcher, or a wanted host recorded differently.
    stale = sorted(
        n for n in known_host_names()
        if not is_running(n) or (n in wanted and recorded.get(n) != wanted[n])
    )  # fmt: skip
    for name in stale:
        report(name, "removing leftovers")
    _each(stale, remove_host, str)

    authorized_key = ensure_client_key()
    network.ensure_bridge()
    new = [h for h in hosts if not is_running(h.name)]
    for h in hosts:
        if h not in new:
            report(h.name, "already running")

    def create(h: SandboxHost) -> None:
        _create(h, hosts, authorized_key)
        report(h.name, f"created ({h.address})")

    _each(new, create, lambda h: h.name)
    _refresh_known_hosts()
    for h in new:
        _start(h)
        report(h.name, "booting")
    wait_all(hosts, report, timeout)


def wait_all(hosts: Sequence[SandboxHost], report: Report = _silent, timeout: float = BOOT_TIMEOUT) -> None:
    started = time.monotonic()

    def wait(h: SandboxHost) -> None:
        report(h.name, _ready_line(h, wait_ready(h, timeout)))
        wait_services(h, started, report, timeout)

    _each(hosts, wait, lambda h: h.name)


def down(report: Report = _silent, names: Iterable[str] | None = None) -> None:
    """Remove every sandbox host on this machine, then the bridge, the cgroup parent and the state dir.

    With names, remove only those hosts and keep the rest (and the bridge and client key) running.
    """
    require_root()
    with held():
        _down(report, names)


def _down(report: Report, names: Iterable[str] | None) -> None:
    everything = names is None
    targets = sorted(known_host_names() if names is None else set(names) & known_host_names())

    def remove(name: str) -> None:
        remove_host(name)
        report(name, "removed")

    _each(targets, remove, str)
    if not everything:
        _refresh_known_hosts()
        return
    network.remove_bridge()
    cgroup.remove_parent()
    if STATE_DIR.exists():
        for leftover in STATE_DIR.iterdir():
            if leftover.is_dir():
                leftover.rmdir()  # only the empty hosts/ dir can be left: a host dir here is a bug
            else:
                leftover.unlink()
        STATE_DIR.rmdir()


def reboot(hosts: Iterable[SandboxHost], report: Report = _silent, timeout: float = BOOT_TIMEOUT) -> None:
    """`systemctl reboot` inside each host; return when each has booted again and is ready."""
    require_root()
    with held():
        _reboot(list(hosts), report, timeout)


def _reboot(hosts: list[SandboxHost], report: Report, timeout: float) -> None:

    def one(h: SandboxHost) -> None:
        before = process.nspawn_pids(h.name)
        if not before:
            raise HostError("not running")
        # The connection may drop or hang as the host goes down: the pid change below is the proof.
        with contextlib.suppress(HostError):
            run(ssh_argv(h.address, ["sudo", "systemctl", "reboot"]), check=False, timeout=30)
        report(h.name, "rebooting")
        if not process.wait_gone(before, timeout):
            raise HostError(f"systemd-nspawn {before} still running {timeout:g}s after systemctl reboot")
        booted = time.monotonic()
        report(h.name, _ready_line(h, wait_ready(h, timeout)))
        wait_services(h, booted, report, timeout)

    _each(hosts, one, lambda h: h.name)
