"""Fabric's own core options, as deploytool's tasks take them: the hosts a user names are the hosts a
task touches. `-H/--hosts` selects hosts exactly like a task's `--host`; core options that deploytool
would otherwise ignore, and that change which hosts are reached or whether they are changed at all,
are refused (exit 2) before anything connects. Connection settings live in the inventory, per host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from invoke.exceptions import Exit

# Core option → why it is refused (what to use instead).
REFUSED = {
    "ssh-config": "-S/--ssh-config: deploytool reads no ssh config given here (it could reroute a host); "
                  "set `ssh_config: true` on a host to apply ~/.ssh/config, or `jump:` for a jump host",
    "dry": "-R/--dry: Fabric's echo mode does not reach deploytool's tasks (they would run for real); "
           "use the task's --dry-run",
    "identity": "-i/--identity: each host's key is its `identity:` in the inventory",
    "connect-timeout": "-t/--connect-timeout: each host's `connect_timeout:` in the inventory bounds its "
                       "connection",
    "command-timeout": "-T/--command-timeout: use the task's --timeout (or the app's `timeout:`)",
    "prompt-for-login-password": "--prompt-for-login-password: deploytool logs in with keys only "
                                 "(`identity:` in the inventory)",
    "prompt-for-passphrase": "--prompt-for-passphrase: deploytool never prompts; use a key without a "
                             "passphrase or an agent",
}


def refuse(message: str) -> Exit:
    return Exit(f"error: {message}", code=2)


def check_refused(core_args: Any) -> None:
    """Exit 2 naming the first core option given that deploytool does not take."""
    for name, why in REFUSED.items():
        if name in core_args and core_args[name].value:
            raise refuse(why)


def apply_hosts(hosts: str, calls: Sequence[Any]) -> None:
    """`-H a,b` given to each task as its `--host a,b`: the same selection, the same checks (an
    unknown name exits 2). A task without `--host`, or one given another list with `--host`, exits 2."""
    for call in calls:
        name = call.called_as or call.task.name
        takes = {a.name for a in call.task.get_arguments()}
        if "host" not in takes:
            raise refuse(f"-H/--hosts {hosts}: task {name} takes no host selection")
        given = call.kwargs.get("host")
        if given not in (None, hosts):
            raise refuse(f"-H/--hosts {hosts} and {name} --host {given}: name the hosts once")
        call.kwargs["host"] = hosts
