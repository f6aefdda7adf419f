"""A handle on running sandbox hosts for tests and scripts: plain ssh as the deploy user, strict host keys."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from deploytool.sandbox import faults, fleet
from deploytool.sandbox.run import run
from deploytool.sandbox.spec import SandboxHost
from deploytool.sandbox.ssh import ssh_argv


@dataclass
class Fleet:
    hosts: list[SandboxHost]

    def host(self, name: str) -> SandboxHost:
        found = [h for h in self.hosts if h.name == name]
        if not found:
            raise KeyError(f"no sandbox host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")
        return found[0]

    def address(self, name: str) -> str:
        return self.host(name).address

    def ssh(
        self, name: str, command: str | Sequence[str], *, check: bool = True, timeout: float = 120,
        via: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run command on host `name` (through the hosts `via`, first hop first); with check, a non-zero
        exit raises HostError with the command."""
        jumps = [self.address(j) for j in via]
        return run(ssh_argv(self.address(name), command, jumps=jumps), check=check, timeout=timeout)

    def behind(self, name: str, jump: str) -> AbstractContextManager[None]:
        """Host `name` reachable over SSH only from host `jump` while the block runs."""
        return faults.behind(self.host(name), self.host(jump))

    def small_disk(self, name: str, path: str, size_kib: int, owner: tuple[int, int]) -> AbstractContextManager[None]:
        """A `size_kib` filesystem mounted at `path` in host `name` while the block runs."""
        return faults.small_disk(self.host(name), path, size_kib, owner)

    def up(self) -> None:
        fleet.up(self.hosts)

    def reboot(self, name: str) -> None:
        fleet.reboot([self.host(name)])

    def down(self) -> None:
        """Remove these hosts only (`deploytool.sandbox.down()` removes the whole sandbox)."""
        fleet.down(names=[h.name for h in self.hosts])
