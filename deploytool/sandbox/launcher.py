"""The process that keeps one host running: `python -m deploytool.sandbox.launcher NAME ROOT NETNS`.

Started detached (setsid, stdin /dev/null) by `fleet.up`. It moves itself into the host's own cgroups
before starting systemd-nspawn, so the host and everything in it live in that subtree, then boots the
host again each time it reboots: `systemctl reboot` inside makes systemd-nspawn exit with status 133.
SIGTERM powers the host off cleanly (systemd-nspawn forwards it to the host's systemd) and ends the loop.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType

from deploytool.sandbox import cgroup

REBOOT_STATUS = 133


def nspawn_argv(name: str, root: str, netns_path: str) -> list[str]:
    return [
        "systemd-nspawn", "-q", "-D", root, "-b",
        # No systemd on the controller to register with or to create a scope in: stay in our cgroup.
        "--register=no", "--keep-unit",
        f"--network-namespace-path={netns_path}",
        "-M", name,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m " + __spec__.name if __spec__ else None)
    parser.add_argument("name")
    parser.add_argument("root")
    parser.add_argument("netns_path")
    args = parser.parse_args(argv)

    cgroup.join(args.name, os.getpid())
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stopping:
        child = subprocess.Popen(nspawn_argv(args.name, args.root, args.netns_path), stdin=subprocess.DEVNULL)
        if stopping:  # SIGTERM came between the loop test and Popen: the handler saw no child
            child.send_signal(signal.SIGTERM)
        status = child.wait()
        print(f"launcher: {args.name}: systemd-nspawn exited with status {status}", flush=True)
        if status != REBOOT_STATUS:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
