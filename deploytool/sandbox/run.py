"""The one place where the sandbox runs local commands: argv lists in, results out.

Every command the sandbox sends (ip, mount, ssh-keygen, ssh, ...) is built as an argv list elsewhere
and executed here, so quoting lives in one place and a failure message always shows the exact command.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from deploytool.errors import HostError

Argv = Sequence[str]


def run(
    argv: Argv,
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv, capturing text output; with check, a non-zero exit raises HostError naming the command."""
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"timed out after {timeout}s: {shlex.join(argv)}") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        raise HostError(f"exit {result.returncode}: {shlex.join(argv)}: {last}")
    return result


def run_all(commands: Sequence[Argv]) -> None:
    """Run commands in order, stopping at the first failure."""
    for argv in commands:
        run(argv)
