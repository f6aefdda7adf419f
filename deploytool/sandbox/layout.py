"""Where the sandbox keeps its state on the controller, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR = Path("/var/lib/deploytool-sandbox")
HOSTS_DIR = STATE_DIR / "hosts"
CLIENT_KEY = STATE_DIR / "id_ed25519"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
DEPLOY_USER = "deploy"


@dataclass(frozen=True)
class HostPaths:
    """A host's state dir: `upper` is its disk (kept across reboots), `root` the overlay mount point."""

    name: str

    @property
    def base(self) -> Path:
        return HOSTS_DIR / self.name

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def record(self) -> Path:
        """JSON naming the host's address, so `down` and `up` can clean hosts no inventory lists."""
        return self.base / "host.json"

    @property
    def console(self) -> Path:
        """The launcher's and the host's console output, for debugging a host that does not boot."""
        return self.base / "console.log"
