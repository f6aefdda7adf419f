"""A host's disk: an overlay of the controller's root, prepared before its first boot.

The overlay makes every package installed on the controller installed on every host, while each host's
changes (its /etc, /home, /srv) land in its own upper dir, which survives reboots.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from deploytool.sandbox import services
from deploytool.sandbox.layout import DEPLOY_USER, STATE_DIR, HostPaths
from deploytool.sandbox.run import Argv, run
from deploytool.sandbox.spec import SandboxHost

# Units that are enabled on the controller but must not run on a bare host, besides its *.wants/.
ALWAYS_MASKED = ("console-getty.service", "getty@tty1.service")
KEEP_ENABLED = ("ssh.service",)

SUDOERS = """\
# deploytool sandbox: a local test fleet, never a real server.
# The deploy user may run, without a password, what deploytool does as root: manage systemd units,
# read their logs, manage user lingering, and install/remove unit files under /etc/systemd/system.
# Arguments are not restricted: sudoers wildcards cannot restrict paths safely, and this is a sandbox.
{user} ALL=(root) NOPASSWD: /usr/bin/systemctl, /usr/bin/journalctl, /usr/bin/loginctl, \\
    /usr/bin/install, /usr/bin/rm, /usr/bin/mkdir, /usr/bin/chown, /usr/bin/tee
"""


def overlay_mount_argv(paths: HostPaths) -> Argv:
    options = f"lowerdir=/,upperdir={paths.upper},workdir={paths.work}"
    return ["mount", "-t", "overlay", "overlay", "-o", options, str(paths.root)]


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def create_disk(paths: HostPaths) -> None:
    """Fresh upper/work dirs and the overlay mounted at paths.root."""
    for d in (paths.upper, paths.work, paths.root):
        d.mkdir(parents=True, exist_ok=True)
    # Hide the sandbox's own state (the client key, other hosts' disks) from the host: an overlay
    # whiteout, a 0/0 character device in the upper dir, removes the path from the merged view.
    hidden = paths.upper / STATE_DIR.relative_to("/")
    hidden.parent.mkdir(parents=True, exist_ok=True)
    if not hidden.exists():
        os.mknod(hidden, 0o600 | 0o020000, os.makedev(0, 0))
    run(overlay_mount_argv(paths))


def unmount(paths: HostPaths) -> None:
    if is_mounted(paths.root):
        run(["umount", "-l", str(paths.root)])


def units_to_mask(etc_systemd: Path = Path("/etc/systemd/system")) -> list[str]:
    """Every non-target unit the controller enables in a *.wants/ dir, except sshd, plus the gettys."""
    enabled = {p.name for p in etc_systemd.glob("*.wants/*") if not p.name.endswith(".target")}
    return sorted((enabled - set(KEEP_ENABLED)) | set(ALWAYS_MASKED))


def hosts_file(peers: Iterable[SandboxHost]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{p.address}\t{p.name}" for p in peers]
    return "\n".join(lines) + "\n"


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LookupError(f"user {user} not in {root}/etc/passwd")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def prepare_root(root: Path, host: SandboxHost, peers: Sequence[SandboxHost], authorized_key: str) -> None:
    """Make the controller's copy a host of its own, before its first boot."""
    _write(root / "etc/hostname", host.name + "\n")
    _write(root / "etc/hosts", hosts_file(peers))
    # A machine id of its own: journald, D-Bus and logind key their state on it.
    _write(root / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)

    kept = services.kept_units(host)  # the services of the host's own roles (Redis, RabbitMQ)
    for unit in (u for u in units_to_mask() if u not in kept):
        link = root / "etc/systemd/system" / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    services.configure(root, host)

    # Own SSH host keys: with the controller's copied keys every host would share one identity.
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    run(["ssh-keygen", "-A", "-f", str(root)])

    _add_deploy_user(root, authorized_key)


def _add_deploy_user(root: Path, authorized_key: str) -> None:
    """A non-root user with a stock home from /etc/skel (root's dotfiles are slow: they run pyenv)."""
    run(["useradd", "--root", str(root), "--create-home", "--shell", "/bin/bash", DEPLOY_USER])
    uid, gid = _ids(root, DEPLOY_USER)
    ssh_dir = root / "home" / DEPLOY_USER / ".ssh"
    _write(ssh_dir / "authorized_keys", authorized_key.strip() + "\n", 0o600)
    ssh_dir.chmod(0o700)
    for path in (ssh_dir, ssh_dir / "authorized_keys", root / "srv"):
        os.chown(path, uid, gid)  # /srv/<app> is where deploytool deploys, as the deploy user
    _write(root / "etc/sudoers.d/deploytool-sandbox", SUDOERS.format(user=DEPLOY_USER), 0o440)


def host_key_lines(paths: HostPaths, host: SandboxHost) -> list[str]:
    """known_hosts lines for the host's own keys, under its address and its name."""
    lines = []
    for pub in sorted((paths.upper / "etc/ssh").glob("ssh_host_*_key.pub")):
        key_type, key = pub.read_text().split()[:2]
        lines.append(f"{host.address},{host.name} {key_type} {key}")
    return lines


def remove_state(paths: HostPaths) -> None:
    # Never walk into a mounted root: rmtree would descend into the controller's whole filesystem.
    if is_mounted(paths.root):
        raise RuntimeError(f"{paths.root} is still mounted; not deleting {paths.base}")
    if paths.base.exists():
        shutil.rmtree(paths.base)
