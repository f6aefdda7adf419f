"""SSH to the hosts: one Fabric connection per host, strict host keys, and the one place that sends
commands (built as data elsewhere) to a host."""

from __future__ import annotations

import io
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection

from deploytool.errors import HostError
from deploytool.inventory import Host

Argv = Sequence[str]


def join(argv: Argv) -> str:
    """The one place argv lists become shell text."""
    return shlex.join(argv)


def script(*commands: Argv | str) -> str:
    """Commands that belong together, run as one remote round trip; the first failure stops it.

    A plain string is taken as shell text already (a builder's compound command)."""
    lines = []
    for c in commands:
        text = c if isinstance(c, str) else join(c)
        # Name the failing command on stderr, so the report shows which one of the batch failed.
        lines.append(f"{{ {text}\n}} || {{ rc=$?; echo {shlex.quote('failed: ' + _first_line(text))} >&2; exit $rc; }}")
    return "\n".join(lines)


class _Lines(io.TextIOBase):
    """A stream that hands over complete lines as they arrive."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.buffer_ = ""

    def write(self, text: str) -> int:
        self.buffer_ += text
        while "\n" in self.buffer_:
            line, self.buffer_ = self.buffer_.split("\n", 1)
            self.on_line(line)
        return len(text)


class UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not in known_hosts, showing the fingerprint to check."""

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(
            f"host key of {hostname} is not in {self.known_hosts} "
            f"({key.get_name()} {key.fingerprint}); verify it and add it there"
        )


@dataclass
class Result:
    stdout: str
    stderr: str
    exited: int


@dataclass
class Session:
    """One host's connection, reused by every step of a task; counts what it sends."""

    host: Host
    connection: Connection
    commands: int = 0
    uploads: int = 0

    def run(self, command: str, stage: str, check: bool = True, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> Result:
        """Run shell text; `on_line` sees each stdout line as it arrives (stage markers, progress)."""
        self.commands += 1
        streams: dict[str, Any] = {"hide": True}
        if on_line is not None:
            streams = {"hide": False, "out_stream": _Lines(on_line), "err_stream": io.StringIO()}
        try:
            r = self.connection.run(command, warn=True, in_stream=False, timeout=timeout, **streams)
        except Exception as e:  # paramiko/socket errors: the host is gone or unreachable
            raise HostError(f"{self.host.name}: {stage}: {_describe(e)}") from None
        result = Result(r.stdout, r.stderr, r.exited)
        if check and r.exited != 0:
            raise self.error(command, stage, result)
        return result

    def error(self, command: str, stage: str, result: Result) -> HostError:
        return HostError(f"{self.host.name}: {stage}: exit {result.exited}: {_first_line(command)}: "
                         f"{last_lines(result.stderr or result.stdout)}")

    def stream(self, command: str) -> int:
        """Run with the host's output passed straight through (journal --follow); returns the exit code."""
        self.commands += 1
        try:
            return int(self.connection.run(command, warn=True, in_stream=False, pty=False).exited)
        except Exception as e:
            raise HostError(f"{self.host.name}: {_describe(e)}") from None

    def put(self, local: Path | Any, remote: str, stage: str) -> None:
        self.uploads += 1
        try:
            self.connection.put(local, remote)
        except Exception as e:
            raise HostError(f"{self.host.name}: {stage}: upload to {remote}: {_describe(e)}") from None

    def close(self) -> None:
        self.connection.close()


def connect(host: Host) -> Session:
    """Open the host's SSH connection now, so an unreachable host fails at once, within its timeout."""
    known_hosts = host.known_hosts or str(Path("~/.ssh/known_hosts").expanduser())
    connect_kwargs: dict[str, Any] = {
        "banner_timeout": max(host.connect_timeout, 30.0),
        "auth_timeout": max(host.connect_timeout, 30.0),
        "allow_agent": host.identity is None,
        "look_for_keys": host.identity is None,
    }
    if host.identity:
        connect_kwargs["key_filename"] = [host.identity]
    conn = Connection(
        host.address, user=host.user, port=host.port, connect_timeout=int(host.connect_timeout),
        connect_kwargs=connect_kwargs,
    )
    # Fabric trusts unknown hosts by default; deploytool never does.
    conn.client.set_missing_host_key_policy(_RejectUnknown(known_hosts))
    for name in (host.address, f"[{host.address}]:{host.port}"):
        for key in _known_keys(known_hosts).get(name, {}).values():
            conn.client.get_host_keys().add(name, key.get_name(), key)
    deadline = time.monotonic() + host.connect_timeout
    while True:
        try:
            conn.open()
            break
        except Exception as e:
            # sshd in a host that is still booting refuses briefly; anything else fails now.
            if isinstance(e, ConnectionRefusedError) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise HostError(f"{host.name}: connect to {host.user}@{host.address}:{host.port}: {_describe(e)}") \
                from None
    return Session(host, conn)


_KNOWN: dict[tuple[str, float], paramiko.HostKeys] = {}
_KNOWN_LOCK = threading.Lock()


def _known_keys(path: str) -> paramiko.HostKeys:
    """known_hosts parsed once per process (and again if it changes), not once per host: with many
    hosts the repeated parsing was a large share of the controller's CPU."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return paramiko.HostKeys()
    with _KNOWN_LOCK:
        if (path, mtime) not in _KNOWN:
            _KNOWN[(path, mtime)] = paramiko.HostKeys(path)
        return _KNOWN[(path, mtime)]


def _describe(e: BaseException) -> str:
    if isinstance(e, paramiko.BadHostKeyException):
        return (f"host key MISMATCH for {e.hostname}: got {e.key.get_name()} {e.key.fingerprint}, "
                f"expected {e.expected_key.fingerprint}; refusing to connect")
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    text = str(e) or type(e).__name__
    return _first_line(text)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"
