"""A host's session played by bash on this machine, for running plans through the real executor
(deploytool.execute) without SSH."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from deploytool.remote import Result, Session


class LocalShell:
    """Runs each script with `bash -s` (in `cwd`, with `env` if given), passing stdout lines as they come,
    as the host's session does; records the scripts and the uploads' remote paths. Uploads go to
    `upload` (none expected by default); a lock (which needs the real session) is never expected."""

    def __init__(self, env: dict[str, str] | None = None, cwd: Path | None = None,
                 upload: Callable[[Path, str, str], None] | None = None) -> None:
        self.env, self.cwd, self.upload = env, cwd, upload
        self.scripts: list[str] = []
        self.uploads: list[str] = []

    def run(self, command: str, stage: str, check: bool = True, timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> Result:
        self.scripts.append(command)
        r = subprocess.run(["bash", "-s"], input=command, capture_output=True, text=True, env=self.env,
                           cwd=self.cwd, timeout=60, check=False)
        for line in r.stdout.splitlines():
            if on_line:
                on_line(line)
        return Result(r.stdout, r.stderr, r.returncode)

    def put(self, local: Path, remote: str, stage: str, timeout: float | None = None) -> None:
        if self.upload is None:
            raise AssertionError(f"{stage}: no upload expected here")
        self.uploads.append(remote)
        self.upload(local, remote, stage)

    def real(self) -> Session:
        raise AssertionError("no lock here")
