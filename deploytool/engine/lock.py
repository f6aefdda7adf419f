"""The per-app, per-host deploy lock: a `flock` on `deploy_to/.deploy.flock` held by the host's plan
runner (deploytool.engine.host_runner) for as long as it runs the plan, with a human-readable record beside it
(`deploy_to/.deploy.lock`) naming who holds it: the Holder here.

- A deploy whose controller died (SIGKILL, a lost CI runner, a power cut, any hostname) frees the lock
  once its runner has put the host back: at once when its SSH session ends, or `HEARTBEAT_MISSES`
  heartbeats after the last one arrived.
- A live deploy, however slow, keeps sending heartbeats: nobody can take its lock over, and
  `--force-unlock` refuses (it only clears a lock directory left by an older deploytool).
- The record carries an owner token: a holder removes only its own record."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Heartbeats the runner may miss before its controller counts as gone: with the default keepalive of
# 5 s, a silent controller's host puts itself back 20 s after the last heartbeat.
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


def last_run_note(host: str, app: str, text: str) -> str | None:
    """What to tell about the host's record of the last deploy or rollback (host_runner's
    `.deploy.last`): only one that was abandoned (its controller went away) is worth a note."""
    try:
        record = json.loads(text) if text.strip() else {}
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("state") != "abandoned":
        return None
    holder = record.get("holder") or {}
    who = (f"{holder.get('user', '?')}@{holder.get('controller', '?')} pid {holder.get('pid', '?')}, "
           f"release {holder.get('release', '?')}, started {holder.get('started', '?')}")
    did = record.get("did") or "had not finished when this was read"
    return (f"{host}: {app}: the last deploy ({who}) was abandoned at stage {record.get('stage', '?')}: "
            f"{record.get('reason', 'its controller went away')}; the host {did}")
