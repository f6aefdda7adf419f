"""Linked files put into an app's shared/ from the machine running fab (`fab config.upload`): compared by
sha256 on the host first, then uploaded to a private temporary file and renamed over the old one, so a
reader sees the old content or the new, never a part. The content is never printed nor put in argv.
The upload is a plan (deploytool.engine.plan) run by the one executor (deploytool.engine.execute)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from deploytool import context, units
from deploytool.commands import config as cmd
from deploytool.commands.config import SharedFile
from deploytool.engine.plan import Facts, Plan, Recovery, Script, Step, Upload
from deploytool.errors import InputError
from deploytool.inventory import App, Inventory
from deploytool.remote import join

CHANGED, UNCHANGED, WOULD_CHANGE = "changed", "unchanged", "would change"
# Stages of the upload plan; the recovery step that removes the temporary file.
COMPARE, PREPARE, UPLOAD, INSTALL = "compare", "prepare", "upload", "install"
COMPARE_OUTPUT, PREPARE_OUTPUT = f"output:{COMPARE}", f"output:{PREPARE}"
DISCARD = "remove the temporary file"


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


def upload_plan(f: SharedFile, content: Content | None, facts: Facts, what: str = "") -> Plan:
    """The upload on one host, from what the host reported so far (`facts`): read the file's state;
    unless it already is as wanted, make a private temporary file beside it, upload into it, give it
    mode and owner and rename it over the old file. Once the upload started, a failure removes the
    temporary file. `content` None: a dry run's plan, to print (`what` names the file to send)."""
    compare = Script((Step(COMPARE, cmd.state(f)),))
    if content is not None and COMPARE_OUTPUT in facts and current(f, content, facts):
        return Plan((compare,))
    # Before mktemp answered (or in a dry run), its template stands for the file it will make.
    temp = facts.get(PREPARE_OUTPUT, "").strip() or cmd.temp_template(f)
    return Plan(
        (compare,
         Script((Step(PREPARE, cmd.make_temp(f)),)),
         Upload(UPLOAD, content.path if content else None, temp, arms=(DISCARD,), what=what),
         Script(tuple(Step(INSTALL, join(argv)) for argv in cmd.install(f, temp)), commits=True)),
        (Recovery(DISCARD, join(cmd.discard(temp))),),
    )


def compare_plan(f: SharedFile) -> Plan:
    """Read only: the file's state, what a dry run asks the host."""
    return Plan(upload_plan(f, None, {}).actions[:1])


def current(f: SharedFile, content: Content, facts: Facts) -> bool:
    """The host reported the file already has this content, mode and owner."""
    return facts.get(COMPARE_OUTPUT, "").strip() == cmd.expected_state(f, content.sha256)


def outcome(f: SharedFile, content: Content, facts: Facts, dry_run: bool) -> str:
    """What a successful run did (or, in a dry run, would do)."""
    if current(f, content, facts):
        return UNCHANGED
    return WOULD_CHANGE if dry_run else CHANGED
