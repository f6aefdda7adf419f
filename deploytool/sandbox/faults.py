"""Conditions a test puts a sandbox host in, and takes away again: behind another host (SSH admitted
only from that host's address, as behind a bastion), and a small filesystem mounted at a path (a disk
that fills up). Each is a context manager that undoes itself, also when the test fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from deploytool.errors import HostError
from deploytool.sandbox import cgroup, network, process
from deploytool.sandbox.run import Argv, run
from deploytool.sandbox.spec import SandboxHost

# The nftables table the firewall lives in, inside the host's network namespace (nothing else there
# uses nftables: deleting the table removes exactly this rule).
TABLE = "deploytool_fault"


def behind_commands(host: SandboxHost, jump: SandboxHost) -> list[Argv]:
    """nft in the host's namespace: SSH (port 22) from any address but the jump host's is dropped, so a
    direct connection times out as it would at a real firewall."""
    nft = ["ip", "netns", "exec", network.netns_name(host.name), "nft"]
    return [
        [*nft, "add", "table", "inet", TABLE],
        [*nft, "add", "chain", "inet", TABLE, "input",
         "{ type filter hook input priority 0 ; policy accept ; }"],
        [*nft, "add", "rule", "inet", TABLE, "input", "tcp", "dport", "22", "ip", "saddr", "!=", jump.address,
         "drop"],
    ]  # fmt: skip


def open_commands(host: SandboxHost) -> list[Argv]:
    return [["ip", "netns", "exec", network.netns_name(host.name), "nft", "delete", "table", "inet", TABLE]]


@contextmanager
def behind(host: SandboxHost, jump: SandboxHost) -> Iterator[None]:
    """`host` reachable over SSH only from `jump`, for the duration of the block."""
    try:
        for argv in behind_commands(host, jump):
            run(argv)
        yield
    finally:
        for argv in open_commands(host):
            run(argv, check=False)  # absent if adding it failed half way: nothing to remove then


def init_pid(host_name: str) -> int:
    """The host's PID 1 (its systemd) as this machine sees it: the child of its systemd-nspawn."""
    nspawns = process.nspawn_pids(host_name)
    for pid in sorted(cgroup.pids(host_name)):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in nspawns:
            return pid
    raise HostError(f"{host_name}: not running (no systemd under its systemd-nspawn)")


def in_host(host_name: str, argv: Argv) -> Argv:
    """argv run as root in the host's mount namespace (where its sshd and units see the mount)."""
    return ["nsenter", "-t", str(init_pid(host_name)), "-m", "--", *argv]


@contextmanager
def small_disk(host: SandboxHost, path: str, size_kib: int, owner: tuple[int, int]) -> Iterator[None]:
    """A tmpfs of `size_kib` at `path` in the host, owned by `owner` (uid, gid), for the duration of the
    block; whatever was at `path` before shows again afterwards."""
    uid, gid = owner
    made = run(in_host(host.name, ["test", "-e", path]), check=False).returncode != 0
    run(in_host(host.name, ["mkdir", "-p", path]))
    try:
        run(in_host(host.name, ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755,uid={uid},gid={gid}",
                                "deploytool-small-disk", path]))
        try:
            yield
        finally:
            run(in_host(host.name, ["umount", path]))
    finally:
        if made:
            run(in_host(host.name, ["rmdir", path]), check=False)
