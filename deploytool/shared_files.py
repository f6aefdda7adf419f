"""Linked files put into an app's shared/ from the machine running fab (`fab config.upload`): compared by
sha256 on the host first, then uploaded to a private temporary file and renamed over the old one, so a
reader sees the old content or the new, never a part. The content is never printed nor put in argv."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from deploytool import context, units
from deploytool.commands import config as cmd
from deploytool.commands.config import SharedFile
from deploytool.errors import HostError, InputError
from deploytool.inventory import App, Inventory
from deploytool.remote import Session, join, script

CHANGED, UNCHANGED = "changed", "unchanged"


def workers_user(inv: Inventory, host: str, app: App) -> str:
    """The user the app's workers run as on `host` (their units' User=; user-mode units run as the SSH
    user). Groups that disagree leave the owner of a private (0600) file ambiguous: bad input."""
    ssh_user = inv.hosts[host].user
    users = sorted({units.runtime(inv, host, app, g).user or ssh_user for g in inv.groups_on(host, app)})
    if len(users) > 1:
        raise InputError(f"{inv.path}: host {host}: app {app.name}: workers run as several users "
                         f"({', '.join(users)}): a private linked file can be owned by only one")
    return users[0] if users else ssh_user


def shared_file(inv: Inventory, host: str, app: App, name: str) -> SharedFile:
    if name not in app.linked_files:
        known = ", ".join(app.linked_files) or "none"
        raise InputError(f"{inv.path}: host {host}: app {app.name}: --file {name}: not one of the app's "
                         f"linked_files ({known})")
    owner = workers_user(inv, host, app)
    if owner == inv.hosts[host].user:
        return SharedFile(app, name, owner)
    # Read it as its owner: in a worker group's runtime context (all groups run as that user).
    group = inv.groups_on(host, app)[0]
    path = f"{app.shared_path}/{name}"
    checksum = context.in_context(inv, host, app, ["sha256sum", "--", path], group, tolerant=True)
    return SharedFile(app, name, owner, tuple(checksum))


@dataclass(frozen=True)
class Content:
    """The file to upload, a private file on the machine running fab, and its sha256 (read once)."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Content:
        return cls(path, hashlib.sha256(path.read_bytes()).hexdigest())


def is_current(session: Session, f: SharedFile, content: Content) -> bool:
    """Read only: the file on the host already has this content, mode and owner."""
    return session.run(cmd.state(f), "compare").stdout.strip() == cmd.expected_state(f, content.sha256)


def upload(session: Session, f: SharedFile, content: Content) -> str:
    """Put `content` at the file's place in shared/ if it differs there; CHANGED or UNCHANGED."""
    if is_current(session, f, content):
        return UNCHANGED
    temp = session.run(cmd.make_temp(f), "upload").stdout.strip()
    try:
        session.put(content.path, temp, "upload")
        session.run(script(*cmd.install(f, temp)), "upload")
    except HostError:
        with contextlib.suppress(HostError):
            session.run(join(cmd.discard(temp)), "upload", check=False)
        raise
    return CHANGED
