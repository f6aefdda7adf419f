"""A host's session played by bash on this machine, for running plans through the real executor
(deploytool.engine.execute) and the real plan runner (deploytool.engine.host_runner) without SSH."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deploytool.remote import Result, sign


class LocalStream:
    """The runner's channel: `bash -s` here, its stdin and stdout the controller's ends."""

    def __init__(self, text: str, env: dict[str, str] | None, cwd: Path | None, nonce: str) -> None:
        self.proc = subprocess.Popen(["bash", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=cwd)
        self.nonce, self.buffer = nonce, b""
        self.sent: list[str] = []
        self.send(sign(text, nonce) + "\n")

    def send(self, text: str) -> bool:
        assert self.proc.stdin is not None
        self.sent.append(text)
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError):
            return False

    def read_line(self, timeout: float) -> str | None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                return None
            self.buffer += data
        raw, _, self.buffer = self.buffer.partition(b"\n")
        line = raw.decode()
        # As the SSH session does: signed markers back in their plain form.
        return line.replace(f"-{self.nonce}", "", 1) if line.startswith("@@deploytool-") else line

    def ended(self) -> bool:
        return self.proc.poll() is not None and b"\n" not in self.buffer

    def error_text(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode() if self.proc.poll() is not None else ""

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Like an SSH session closing: the runner's stdin ends (it finishes what it must on its own)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(60)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


class LocalShell:
    """Runs the plan runner with `bash -s` here (in `cwd`, with `env` if given), as the host's session
    does; records the scripts the runner ran and the uploads' remote paths. Uploads go to `upload`
    (none expected by default)."""

    nonce = "0123456789abcdef"
    keepalive = 0.5

    def __init__(self, env: dict[str, str] | None = None, cwd: Path | None = None,
                 upload: Callable[[Path, str, str], None] | None = None) -> None:
        self.env, self.cwd, self.upload = env, cwd, upload
        self.uploads: list[str] = []
        self.streams: list[LocalStream] = []
        self.reads: list[str] = []

    def run(self, command: str, stage: str, check: bool = True, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> Result:
        """One read as a round trip of its own (what a dry run's preview sends)."""
        self.reads.append(command)
        r = subprocess.run(["bash", "-s"], input=command, capture_output=True, text=True, env=self.env,
                           cwd=self.cwd, timeout=60, check=False)
        for line in r.stdout.splitlines():
            if on_line:
                on_line(line)
        return Result(r.stdout, r.stderr, r.returncode)

    def start(self, command: str, stage: str) -> LocalStream:
        stream = LocalStream(command, self.env, self.cwd, self.nonce)
        self.streams.append(stream)
        return stream

    def put(self, local: Path, remote: str, stage: str, timeout: float | None = None) -> None:
        if self.upload is None:
            raise AssertionError(f"{stage}: no upload expected here")
        self.uploads.append(remote)
        self.upload(local, remote, stage)

    @property
    def scripts(self) -> list[str]:
        """What went to the host, one text per round trip: each read, each plan sent (its runner, the plan
        and the controller's lines)."""
        return [*self.reads, *("".join(s.sent) for s in self.streams)]

    def lost(self) -> bool:
        return False
