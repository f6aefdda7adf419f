"""The per-app, per-host deploy lock: held by `flock` in a process on the host that lives exactly as
long as the deploy's SSH session and its heartbeat (commands.release.hold_lock), with a human-readable
record beside it (`deploy_to/.deploy.lock`) naming who holds it.

- A deploy whose controller died (SIGKILL, a lost CI runner, a power cut, any hostname) frees the lock
  when its SSH session ends, or at the latest `HEARTBEAT_MISSES` heartbeats after the last one arrived.
- A live deploy, however slow, keeps sending heartbeats: nobody can take its lock over, and
  `--force-unlock` refuses (it only clears a lock directory left by an older deploytool).
- The record carries an owner token: a holder removes only its own record."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from deploytool.commands import release as rel
from deploytool.errors import HostError
from deploytool.inventory import App
from deploytool.remote import Channel, Session, join

# Heartbeats the holder may miss before it lets go: with the default keepalive of 5 s, a dead
# controller blocks the next deploy for at most 20 s after its last heartbeat.
HEARTBEAT_MISSES = 4


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock; recorded beside it so a second deploy can name the holder."""

    user: str
    controller: str
    pid: int
    revision: str
    release: str
    started: str
    token: str = field(default="", compare=False)

    @classmethod
    def me(cls, revision: str, release: str) -> Holder:
        return cls(getpass.getuser(), socket.gethostname(), os.getpid(), revision, release,
                   datetime.now(UTC).isoformat(timespec="seconds"), secrets.token_hex(12))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text.strip().splitlines()[-1])
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k != "token"},
                       token=str(data.get("token", "")))
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


class Held:
    """A lock this deploy holds: the holder's channel, fed a heartbeat line every keepalive interval."""

    def __init__(self, session: Session, app: App, holder: Holder, channel: Channel) -> None:
        self.session, self.app, self.holder, self.channel = session, app, holder, channel
        self.stopped = threading.Event()
        threading.Thread(target=self._beat, daemon=True, name="lock-heartbeat").start()

    def _beat(self) -> None:
        while not self.stopped.wait(self.session.host.keepalive):
            if not self.channel.send("\n"):
                return

    def still_ours(self) -> str:
        """Shell text that fails unless the host still has this lock held for us."""
        return rel.lock_is_ours(self.app, self.holder.token)

    def release(self) -> None:
        """Tell the holder to let go and wait (bounded) until it has removed its record."""
        self.stopped.set()
        try:
            if not self.channel.send("release\n"):
                raise HostError(f"{self.session.host.name}: unlock: the lock holder is gone "
                                "(it let go by itself when its session ended)")
            if self.channel.wait(self.session.liveness.bound if self.session.liveness else 15.0) is None:
                raise HostError(f"{self.session.host.name}: unlock: no answer from the lock holder; "
                                "it lets go by itself within the heartbeat bound")
        finally:
            self.channel.close()


def bound(session: Session) -> float:
    return session.host.keepalive * HEARTBEAT_MISSES


def acquire(session: Session, app: App, holder: Holder, force: bool) -> Held:
    """Take the lock (one round trip), or fail naming its holder.

    `force` clears only a lock directory left by an older deploytool, whose holder cannot be checked:
    a lock held through flock has a live holder by construction (it had a heartbeat within the bound)."""
    for attempt in (1, 2):
        text = rel.hold_lock(app, holder.json(), holder.token, bound(session))
        channel = session.start(text, "lock")
        first = channel.read_line(session.timeout)
        if first == rel.LOCKED:
            return Held(session, app, holder, channel)
        lines = [first or ""]
        while (line := channel.read_line(5.0)) is not None:
            lines.append(line)
        code = channel.wait(5.0)
        channel.close()
        other = Holder.parse("\n".join(lines))
        who = other.describe() if other else "an unknown holder"
        if code == rel.LOCK_BUSY:
            raise HostError(
                f"{session.host.name}: lock: {app.name} is being deployed by {who}; it is alive (its "
                f"heartbeat reached the host within {bound(session):g}s), so the lock is not broken "
                "even with --force-unlock; a dead deploy's lock frees itself within that bound"
            )
        if code == rel.LEGACY_LOCK and attempt == 1:
            if not (force or (other is not None and other.gone())):
                raise HostError(
                    f"{session.host.name}: lock: {app.name} is being deployed by {who} (a lock "
                    "directory of an older deploytool); if that deploy died, clear it with --force-unlock"
                )
            session.run(join(rel.clear_legacy_lock(app)), "lock")
            continue
        raise HostError(f"{session.host.name}: lock: could not take the lock (exit {code}): "
                        f"{' | '.join(lines[-3:]) or '(no output)'}")
    raise HostError(f"{session.host.name}: lock: could not take the lock")
