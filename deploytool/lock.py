"""The per-app, per-host deploy lock: a directory made atomically under deploy_to (mkdir), holding a
record of who took it, so a second deploy or rollback can name the holder and a dead one can be cleared."""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from deploytool.commands import release as rel
from deploytool.errors import HostError
from deploytool.inventory import App
from deploytool.remote import Session, join


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock; recorded in it so a second deploy can name the holder."""

    user: str
    controller: str
    pid: int
    revision: str
    release: str
    started: str

    @classmethod
    def me(cls, revision: str, release: str) -> Holder:
        return cls(getpass.getuser(), socket.gethostname(), os.getpid(), revision, release,
                   datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text.strip().splitlines()[-1])
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def gone(self) -> bool:
        """Provably dead: it ran on this machine and its process no longer exists."""
        if self.controller != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return (f"{self.user}@{self.controller} pid {self.pid} since {self.started} "
                f"(release {self.release}, revision {self.revision[:12] or '?'})")



def clear_stale(session: Session, app: App, output: str, force: bool) -> None:
    """The lock is held (its command printed the holder): clear it only if forced or if the holder is
    provably gone; otherwise fail naming the holder."""
    other = Holder.parse(output)
    if not (force or (other is not None and other.gone())):
        who = other.describe() if other else "an unknown holder"
        raise HostError(
            f"{session.host.name}: lock: {app.name} is being deployed by {who}; "
            "if that deploy died, clear it with --force-unlock"
        )
    session.run(join(rel.unlock(app)), "lock")


def acquire(session: Session, app: App, holder: Holder, force: bool) -> None:
    """Take the lock in its own round trip (rollback); deploy folds the same command into its first."""
    for attempt in (1, 2):
        r = session.run(rel.lock(app, holder.json()), "lock", check=False)
        if r.exited == 0:
            return
        if r.exited != rel.LOCK_BUSY or attempt == 2:
            raise session.error(rel.lock(app, holder.json()), "lock", r)
        clear_stale(session, app, r.stdout, force)


def release(session: Session, app: App) -> None:
    session.run(join(rel.unlock(app)), "unlock")
