"""Serializing changes to the sandbox: it is one per machine, and two `up`s at once would race.

The lock file lives in /run/lock, not in the state dir, because `down` deletes the state dir.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FLEET_LOCK = Path("/run/lock/deploytool-sandbox.lock")
SESSION_LOCK = Path("/run/lock/deploytool-sandbox.session.lock")


@contextmanager
def held(path: Path = FLEET_LOCK) -> Iterator[None]:
    """Hold an exclusive flock on path, waiting for whoever holds it (released on exit, even on crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
