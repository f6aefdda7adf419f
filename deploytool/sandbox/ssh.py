"""SSH from the controller to sandbox hosts: the client key, known_hosts, and ssh argv lists.

Host keys are checked strictly, against the known_hosts file the sandbox writes from each host's own
keys, exactly as deploytool checks them everywhere else.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from deploytool.sandbox.layout import CLIENT_KEY, DEPLOY_USER, KNOWN_HOSTS, STATE_DIR
from deploytool.sandbox.run import Argv, run


def ensure_client_key() -> str:
    """Generate the sandbox's client key once; return its public half (the hosts' authorized key)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if not CLIENT_KEY.exists():
        comment = "deploytool-sandbox"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(CLIENT_KEY)])
    return CLIENT_KEY.with_suffix(".pub").read_text().strip()


def write_known_hosts(lines: Iterable[str]) -> None:
    tmp = KNOWN_HOSTS.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(KNOWN_HOSTS)  # atomically: tests may be connecting while a fleet grows


def ssh_options(connect_timeout: float = 10) -> list[str]:
    return [
        "-F", "/dev/null",  # the controller's ~/.ssh/config has no say over the sandbox
        "-i", str(CLIENT_KEY), "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={connect_timeout:g}",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def ssh_argv(
    address: str, command: str | Sequence[str], *, user: str = DEPLOY_USER, connect_timeout: float = 10
) -> Argv:
    """ssh argv running command on a host; a list is quoted here, a string is sent as a shell line."""
    remote = command if isinstance(command, str) else shlex.join(command)
    return ["ssh", *ssh_options(connect_timeout), f"{user}@{address}", "--", remote]
