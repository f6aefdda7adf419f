"""SSH to the hosts: one Fabric connection per host, strict host keys, and the one place that sends
commands (built as data elsewhere) to a host.

Every wait is bounded: the connection is opened within `connect_timeout`; a keepalive asks the host for
an answer every `keepalive` seconds and the host counts as lost after three unanswered ones; each stage
of a remote script may run at most `timeout` seconds. Scripts travel on the remote shell's stdin, never
in its argv, so no value in them shows in `ps` on the host or here."""

from __future__ import annotations

import atexit
import os
import re
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from deploytool.errors import HostError
from deploytool.inventory import Host

Argv = Sequence[str]

# The remote shell every script is fed to, on stdin.
SHELL = ["bash", "-s"]
# Keepalive answers a host may miss before it counts as lost.
MISSED_KEEPALIVES = 3
# A stage without a timeout of its own (reads, status): generous, still bounded.
DEFAULT_TIMEOUT = 600.0


class Expand(str):
    """An argument holding `$name` references the remote shell fills in (a value only the host knows,
    such as the release a running worker works in); join() puts it in double quotes, so it stays one
    word. Nothing else in it may be special to the shell."""

    def __new__(cls, text: str) -> Expand:
        if not re.fullmatch(r"(?:[\w./=:@%+,-]|\$\{?[A-Za-z_]\w*\}?)*", text):
            raise ValueError(f"not a plain word with $variables: {text!r}")
        return super().__new__(cls, text)


def join(argv: Argv) -> str:
    """The one place argv lists become shell text."""
    return " ".join(f'"{a}"' if isinstance(a, Expand) else shlex.quote(a) for a in argv)


def script(*commands: Argv | str) -> str:
    """Commands that belong together, run as one remote round trip; the first failure stops it.

    A plain string is taken as shell text already (a builder's compound command)."""
    lines = []
    for c in commands:
        text = c if isinstance(c, str) else join(c)
        # Name the failing command on stderr, so the report shows which one of the batch failed.
        lines.append(f"{{ {text}\n}} || {{ rc=$?; echo {shlex.quote('failed: ' + _first_line(text))} >&2; exit $rc; }}")
    return "\n".join(lines)


# Marker lines a script prints to announce a stage or report a fact (commands.release). Only lines
# carrying this session's nonce are believed: build output cannot fake a stage or a release name.
_MARKER = re.compile(r"(?<!@)@@deploytool-([a-z]+)\b")


def sign(text: str, nonce: str) -> str:
    return _MARKER.sub(lambda m: f"{m.group(0)}-{nonce}", text)


def _verify(line: str, nonce: str) -> str:
    """A signed marker line back in its plain form; an unsigned one is defused."""
    m = _MARKER.match(line)
    if not m:
        return line
    signed = f"{m.group(0)}-{nonce}"
    if line.startswith(signed):
        return m.group(0) + line[len(signed):]
    return "(unsigned) " + line


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


class _Liveness:
    """Asks the host for an answer every `interval` seconds (a keepalive request wanting a reply, which
    sshd answers even while a command runs). The host is lost once no answer came for `bound` seconds:
    a partitioned or frozen host is noticed then, not after the kernel's TCP timeout."""

    def __init__(self, transport: paramiko.Transport, interval: float) -> None:
        self.transport = transport
        self.interval = interval
        self.bound = interval * MISSED_KEEPALIVES
        self.last = time.monotonic()
        self.stopped = threading.Event()
        threading.Thread(target=self._loop, daemon=True, name="keepalive").start()

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            if not self.transport.is_active():
                return
            try:
                # Returns on any reply (OpenSSH answers an unknown request with a failure: still an answer).
                self.transport.global_request("keepalive@openssh.com", wait=True)
            except Exception:
                return
            if self.transport.is_active():
                self.last = time.monotonic()

    def lost(self) -> bool:
        return time.monotonic() - self.last > self.bound

    def silence(self) -> float:
        return time.monotonic() - self.last


@dataclass
class Channel:
    """A command that keeps running while we do other work (the lock holder): write to its stdin, read
    its output lines, wait for its exit."""

    session: Session
    chan: paramiko.Channel
    buffer: bytes = b""
    errors: bytes = b""  # the last of its stderr, for the report when it fails before saying why

    def send(self, text: str) -> bool:
        try:
            self.chan.sendall(text.encode())
            return True
        except Exception:
            return False

    def read_line(self, timeout: float) -> str | None:
        """The next stdout line (markers verified), or None if it ended or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.session.lost():
                return None
            select.select([self.chan], [], [], min(left, 0.5))
            if self.chan.recv_ready():
                self.buffer += self.chan.recv(65536)
            elif self.chan.recv_stderr_ready():
                self.errors = (self.errors + self.chan.recv_stderr(65536))[-4096:]
            elif (self.chan.exit_status_ready() or self.chan.closed) and not self.chan.recv_ready():
                return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return _verify(line.decode(errors="replace"), self.session.nonce)

    def ended(self) -> bool:
        """It exited (or its channel closed) and every line it wrote has been read."""
        return ((self.chan.exit_status_ready() or self.chan.closed) and not self.chan.recv_ready()
                and b"\n" not in self.buffer)

    def error_text(self) -> str:
        return self.errors.decode(errors="replace")

    def wait(self, timeout: float) -> int | None:
        """Its exit status, or None if it did not end within `timeout` (or the host was lost)."""
        deadline = time.monotonic() + timeout
        while not self.chan.exit_status_ready():
            if time.monotonic() > deadline or self.session.lost():
                return None
            self.chan.status_event.wait(0.2)
        return self.chan.recv_exit_status()

    def close(self) -> None:
        self.chan.close()


@dataclass
class Session:
    """One host's connection, reused by every step of a task; counts what it sends."""

    host: Host
    connection: Connection
    timeout: float = DEFAULT_TIMEOUT
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    commands: int = 0
    uploads: int = 0
    liveness: _Liveness | None = None
    opened: tuple[float, float] = (0.0, 0.0)  # when connecting began (monotonic) and how long it took

    def real(self) -> Session:
        return self

    @property
    def keepalive(self) -> float:
        return self.host.keepalive

    def lost(self) -> bool:
        return self.liveness is not None and self.liveness.lost()

    def usable(self) -> bool:
        """Connected and answering: fit to carry more work (a jump host's connection, reused)."""
        transport = self.connection.client.get_transport()
        return transport is not None and transport.is_active() and not self.lost()

    def _lost_error(self, stage: str) -> HostError:
        silence = self.liveness.silence() if self.liveness else 0.0
        # Later calls (recovery, unlock) fail at once instead of each waiting for the bound again.
        self.close()
        return HostError(f"{self.host.name}: {stage}: no answer from the host for {silence:.0f}s "
                         "(network or host down); gave up")

    def _open(self, text: str, stage: str) -> paramiko.Channel:
        """Start the remote shell and send it `text` on stdin (the text never appears in an argv)."""
        self.commands += 1
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(f"{self.host.name}: {stage}: the connection is closed")
        try:
            chan: paramiko.Channel = transport.open_session(
                timeout=self.liveness.bound if self.liveness else 30.0)
            chan.exec_command(join(SHELL))
            chan.sendall(sign(text, self.nonce).encode())
        except Exception as e:
            if self.lost() or "Timeout opening channel" in str(e):
                raise self._lost_error(stage) from None
            raise HostError(f"{self.host.name}: {stage}: {_describe(e)}") from None
        return chan

    def run(self, command: str, stage: str, check: bool = True, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> Result:
        """Run shell text; `on_line` sees each stdout line as it arrives (stage markers, progress).

        Each stage the script announces (a stage marker) may take `timeout` seconds (the session's
        default otherwise); the host answering no keepalive for the liveness bound ends the wait too."""
        limit = timeout if timeout is not None else self.timeout
        # The group's stdin is /dev/null: bash parses the whole group before running it, so nothing the
        # script runs (a build step) can read the rest of the script, or hang waiting for input.
        chan = self._open("{\n" + command + "\n} </dev/null\n", stage)
        try:
            chan.shutdown_write()
            return self._collect(chan, command, stage, check, limit, on_line)
        finally:
            chan.close()

    def _collect(self, chan: paramiko.Channel, command: str, stage: str, check: bool, limit: float,
                 on_line: Callable[[str], None] | None) -> Result:
        out, err, pending = bytearray(), bytearray(), b""
        current = stage
        deadline = time.monotonic() + limit
        while True:
            select.select([chan], [], [], 0.5)
            got = False
            while chan.recv_ready():
                data = chan.recv(65536)
                got = True
                pending += data
                while b"\n" in pending:
                    raw, _, pending = pending.partition(b"\n")
                    line = _verify(raw.decode(errors="replace"), self.nonce)
                    out += line.encode() + b"\n"
                    if line.startswith("@@deploytool-stage "):
                        current = line.split(" ", 1)[1].strip()
                        deadline = time.monotonic() + limit
                    if on_line is not None:
                        on_line(line)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                got = True
            if not got and chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                raise HostError(f"{self.host.name}: {current}: timed out after {limit:g}s "
                                f"(the stage's timeout); {last_lines(err.decode(errors='replace'))}")
            if self.lost():
                raise self._lost_error(current)
        if pending:
            out += _verify(pending.decode(errors="replace"), self.nonce).encode()
        result = Result(out.decode(errors="replace"), err.decode(errors="replace"), chan.recv_exit_status())
        if check and result.exited != 0:
            raise self.error(command, stage, result)
        return result

    def start(self, command: str, stage: str) -> Channel:
        """Start shell text that keeps reading its stdin after the script (the lock holder)."""
        return Channel(self, self._open(command + "\n", stage))

    def error(self, command: str, stage: str, result: Result) -> HostError:
        return HostError(f"{self.host.name}: {stage}: exit {result.exited}: {_first_line(command)}: "
                         f"{last_lines(result.stderr or result.stdout)}")

    def stream(self, command: str) -> int:
        """Run with the host's output passed straight through (journal --follow); returns the exit code.

        No stage timeout (following a journal never ends by itself), but a lost host still ends it."""
        chan = self._open("{\n" + command + "\n} </dev/null\n", "logs")
        try:
            chan.shutdown_write()
            while True:
                select.select([chan], [], [], 0.5)
                while chan.recv_ready():
                    os.write(1, chan.recv(65536))
                while chan.recv_stderr_ready():
                    os.write(2, chan.recv_stderr(65536))
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    return chan.recv_exit_status()
                if self.lost():
                    raise self._lost_error("logs")
        finally:
            chan.close()

    def put(self, local: Path | Any, remote: str, stage: str, timeout: float | None = None) -> None:
        """Upload a file; bounded like a stage: a stalled transfer fails within the liveness bound."""
        self.uploads += 1
        limit = timeout if timeout is not None else self.timeout
        done = threading.Event()
        failure: list[BaseException] = []

        def send() -> None:
            try:
                sftp = self.connection.client.open_sftp()
                try:
                    sftp.get_channel().settimeout(limit)
                    sftp.put(str(local), remote)
                finally:
                    sftp.close()
            except BaseException as e:
                failure.append(e)
            finally:
                done.set()

        threading.Thread(target=send, daemon=True, name="upload").start()
        deadline = time.monotonic() + limit
        while not done.wait(0.5):
            if self.lost() or time.monotonic() > deadline:
                error = (self._lost_error(stage) if self.lost() else
                         HostError(f"{self.host.name}: {stage}: upload to {remote}: timed out after {limit:g}s"))
                # Closing the connection ends the stalled transfer's thread as well.
                self.close()
                raise error
        if failure:
            raise HostError(f"{self.host.name}: {stage}: upload to {remote}: "
                            f"{self._upload_problem(local, remote) or _describe(failure[0])}") from None

    def _upload_problem(self, local: Path | Any, remote: str) -> str | None:
        """Why an upload failed, when the host can tell: SFTP reports a full disk only as "Failure"."""
        directory = remote.rsplit("/", 1)[0] or "/"
        try:
            free = self.run(f"df -Pk {shlex.quote(directory)} | awk 'NR==2 {{print $4}}'", "upload", timeout=30)
            size_kb = -(-os.path.getsize(local) // 1024)
        except (HostError, OSError):
            return None
        text = free.stdout.strip()
        if text.isdigit() and int(text) < size_kb:
            return f"no space left on device ({text} KiB free under {directory}, the upload is {size_kb} KiB)"
        return None

    def close(self) -> None:
        if self.liveness is not None:
            self.liveness.stopped.set()
        self.connection.close()


def _config(host: Host) -> Config:
    """Fabric's settings for this host: ~/.ssh/config and /etc/ssh/ssh_config only if the inventory
    opts in (`ssh_config: true`); they could add a ProxyCommand or forward the agent."""
    if host.ssh_config:
        return Config()
    return Config(ssh_config=paramiko.SSHConfig())


def connect(host: Host, timeout: float = DEFAULT_TIMEOUT) -> Session:
    """Open the host's SSH connection now, so an unreachable host fails at once, within its timeout.

    A host with a `jump` is reached through a channel of its jump host's connection (opened here
    first, then shared by every host behind it: deploytool.remote.jumps); its own host key is checked
    as strictly as a direct one."""
    try:
        gateway = _jumps.session(host.route[-1]) if host.route else None
    except HostError as e:
        raise HostError(f"{host.name}: {e}") from None
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
        connect_kwargs=connect_kwargs, config=_config(host), forward_agent=False,
        # The inventory's jump wins over a ProxyJump/ProxyCommand an ssh config (ssh_config: true) has.
        **({"gateway": False} if gateway else {}),
    )
    # Fabric trusts unknown hosts by default; deploytool never does.
    conn.client.set_missing_host_key_policy(_RejectUnknown(known_hosts))
    for name in (host.address, f"[{host.address}]:{host.port}"):
        for key in _known_keys(known_hosts).get(name, {}).values():
            conn.client.get_host_keys().add(name, key.get_name(), key)
    began = time.monotonic()
    deadline = began + host.connect_timeout
    where = f"{host.user}@{host.address}:{host.port}" + (f" through jump host {gateway.host.name}"
                                                          if gateway else "")
    while True:
        try:
            if gateway is not None:
                conn.connect_kwargs["sock"] = _jumps.tunnel(gateway, host, deadline)
            conn.open()
            break
        except Exception as e:
            # sshd in a host that is still booting refuses briefly; anything else fails now. Through a
            # jump host, a refused connection is a channel the jump host could not open.
            refused = isinstance(e, ConnectionRefusedError) or (
                isinstance(e, paramiko.ChannelException) and e.code == paramiko.common.OPEN_FAILED_CONNECT_FAILED)
            if refused and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise HostError(f"{host.name}: connect to {where}: {_describe(e)}") from None
    transport = conn.client.get_transport()
    assert transport is not None
    transport.set_keepalive(max(1, int(host.keepalive)))
    return Session(host, conn, timeout=timeout, liveness=_Liveness(transport, host.keepalive),
                   opened=(began, time.monotonic() - began))


class _Jumps:
    """The connections to jump hosts, one per jump host for the whole task, shared by every host behind
    it (hosts connecting at the same time wait for the one being opened). A connection found closed
    or lost is opened again; a jump host that could not be reached fails every host that was waiting
    for it with the same error, at once, and is tried again by the next host that asks later."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opening: dict[str, threading.Lock] = {}
        self.open: dict[str, Session] = {}
        self.failed: dict[str, tuple[float, str]] = {}
        atexit.register(self.close)

    def session(self, jump: Host) -> Session:
        asked = time.monotonic()
        with self.lock:
            opening = self.opening.setdefault(jump.name, threading.Lock())
        with opening:
            session = self.open.get(jump.name)
            if session is not None and session.usable():
                return session
            if session is not None:
                session.close()
            failed = self.failed.get(jump.name)
            if failed is not None and failed[0] >= asked:
                raise HostError(failed[1])
            try:
                session = connect(jump)
            except HostError as e:
                self.failed[jump.name] = (time.monotonic(), f"jump host {e}")
                raise HostError(f"jump host {e}") from None
            self.open[jump.name] = session
            return session

    def tunnel(self, jump: Session, host: Host, deadline: float) -> paramiko.Channel:
        """A `direct-tcpip` channel from the jump host to `host`'s SSH port, opened by `deadline`."""
        transport = jump.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(f"jump host {jump.host.name}: the connection is closed")
        channel: paramiko.Channel = transport.open_channel(
            "direct-tcpip", (host.address, host.port), ("", 0), timeout=max(0.1, deadline - time.monotonic()))
        return channel

    def close(self) -> None:
        with self.lock:
            sessions, self.open = list(self.open.values()), {}
        for session in sessions:
            session.close()


_jumps = _Jumps()


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
