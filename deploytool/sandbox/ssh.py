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


def ssh_options(connect_timeout: float = 10, jumps: Sequence[str] = (), user: str = DEPLOY_USER) -> list[str]:
    """The options of every ssh to a sandbox host; `jumps`: the addresses of the hosts to pass through,
    the first hop first."""
    return [
        "-F", "/dev/null",  # the controller's ~/.ssh/config has no say over the sandbox
        "-i", str(CLIENT_KEY), "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={connect_timeout:g}",
        "-o", "LogLevel=ERROR",
        *(["-o", "ProxyCommand=" + proxy_command(jumps, user, connect_timeout)] if jumps else []),
    ]  # fmt: skip


def proxy_command(jumps: Sequence[str], user: str = DEPLOY_USER, connect_timeout: float = 10) -> str:
    """The ProxyCommand that reaches the next hop through `jumps`: an ssh to the last jump host (itself
    through the ones before it) forwarding stdin/stdout to the target (`-W`). OpenSSH's own `-J` would
    not hand the key and the strict known_hosts options on to the hops; this checks every hop's key.

    ssh expands `%h`/`%p` in a ProxyCommand, and `%%` to `%`: every `%` of the inner command is doubled
    but the target's own `[%h]:%p`, so a nested hop's tokens reach the ssh they belong to."""
    *before, last = jumps

    def escape(arg: str) -> str:
        return arg.replace("%", "%%")

    inner = ["ssh", *ssh_options(connect_timeout, before, user)]
    return shlex.join([*(escape(a) for a in inner), "-W", "[%h]:%p", escape(f"{user}@{last}")])


def ssh_argv(
    address: str, command: str | Sequence[str], *, user: str = DEPLOY_USER, connect_timeout: float = 10,
    jumps: Sequence[str] = (),
) -> Argv:
    """ssh argv running command on a host; a list is quoted here, a string is sent as a shell line.
    `jumps`: addresses of the hosts to pass through (a host behind a bastion), the first hop first."""
    remote = command if isinstance(command, str) else shlex.join(command)
    return ["ssh", *ssh_options(connect_timeout, jumps, user), f"{user}@{address}", "--", remote]
