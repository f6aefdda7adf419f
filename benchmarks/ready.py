"""When is every worker of every host ready again? Asked of the broker, the same way for every tool.

After a tool exits, the benchmark polls the bench Redis until every expected worker process has
registered anew, that is after the tool started, by the worker system's own record:

- Sidekiq: a member of the `processes` set whose hash's `info` JSON has the host's `hostname`, the
  instance's `tag` (`-g app-group-N`) and a `started_at` after the run began, and `quiet` false. Sidekiq
  writes it on its first heartbeat, when it starts fetching, and removes it when it stops.
- RQ: a member of `rq:workers` whose `rq:worker:<name>` hash has the host's `hostname`, the group's
  `queues` and a `birth` after the run began (RQ writes it as the worker starts listening), no `death`.

A tool that returns before its workers are ready is not faster: its ready time is the time from its
start to the poll that found every worker. The broker's registrations carry their own time stamps, so the
moment the last worker registered is reported too (it can be before the tool exited).
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

POLL = 0.1  # seconds between polls

# One round trip per poll: the registrations of both systems, as JSON (Redis runs Lua scripts atomically).
SCRIPT = """
local out = {sidekiq = {}, rq = {}}
for _, id in ipairs(redis.call('SMEMBERS', 'processes')) do
  local h = redis.call('HMGET', id, 'info', 'quiet')
  if h[1] then out.sidekiq[#out.sidekiq + 1] = {h[1], h[2] or ''} end
end
for _, key in ipairs(redis.call('SMEMBERS', 'rq:workers')) do
  local h = redis.call('HMGET', key, 'birth', 'hostname', 'queues', 'death')
  if h[1] and not h[4] then out.rq[#out.rq + 1] = {h[1], h[2] or '', h[3] or ''} end
end
return cjson.encode(out)
"""


@dataclass(frozen=True)
class Expected:
    """Worker processes one host must register anew: `count` of this kind with this key (Sidekiq: the
    instance's tag; RQ: its queues, comma-joined as RQ stores them)."""

    kind: str
    key: str
    count: int = 1


@dataclass(frozen=True)
class Registration:
    kind: str
    host: str
    key: str
    stamp: float  # epoch seconds, the worker's own


@dataclass
class Ready:
    """The outcome of one wait: seconds from the tool's start, or None with what was still missing."""

    seconds: float | None
    last_registered: float | None  # the last expected worker's own registration, seconds from the start
    missing: list[str]


def redis_eval(address: tuple[str, int], script: str, timeout: float = 5) -> str:
    """EVAL script 0 on a Redis, its bulk-string reply (RESP, spoken directly: no client library in
    deploytool's venv, and one connection per poll is cheap)."""
    args = [b"EVAL", script.encode(), b"0"]
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        f = sock.makefile("rb")
        head = f.readline().rstrip(b"\r\n")
        if head[:1] != b"$" or head == b"$-1":
            raise RuntimeError(f"redis {address[0]}: {head.decode(errors='replace')}")
        return f.read(int(head[1:])).decode()


def _rq_time(text: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


def registrations(address: tuple[str, int]) -> list[Registration]:
    data = json.loads(redis_eval(address, SCRIPT))
    out = []
    for info, quiet in data.get("sidekiq") or []:  # cjson writes an empty list as {}
        i = json.loads(info)
        if quiet != "true":
            out.append(Registration("sidekiq", i.get("hostname", ""), i.get("tag", ""), float(i["started_at"])))
    for birth, host, queues in data.get("rq") or []:
        out.append(Registration("rq", host, queues, _rq_time(birth)))
    return out


def missing(hosts: list[str], expected: list[Expected], regs: list[Registration], since: float
            ) -> tuple[list[str], float | None]:
    """What is not registered anew since `since` (empty when all is), and the moment the last expected
    worker registered (the count-th earliest registration of each)."""
    stamps: dict[tuple[str, str, str], list[float]] = {}
    for r in regs:
        if r.stamp >= since:
            stamps.setdefault((r.kind, r.host, r.key), []).append(r.stamp)
    gaps, last = [], None
    for host in hosts:
        for e in expected:
            got = sorted(stamps.get((e.kind, host, e.key), []))
            if len(got) < e.count:
                gaps.append(f"{host}: {e.kind} {e.key} {len(got)}/{e.count}")
            else:
                last = max(last or 0.0, got[e.count - 1])
    return gaps, last


def wait_ready(address: tuple[str, int], hosts: list[str], expected: list[Expected], t0: float,
               timeout: float) -> Ready:
    """Polls until every host's expected workers registered after t0 (epoch), at most `timeout` seconds
    from now (the tool has exited)."""
    deadline = time.time() + timeout
    gaps = ["no poll answered"]
    while True:
        try:
            gaps, last = missing(hosts, expected, registrations(address), t0)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            gaps, last = [f"broker: {e}"], None
        now = time.time()
        if not gaps:
            return Ready(now - t0, None if last is None else last - t0, [])
        if now >= deadline:
            return Ready(None, None, gaps)
        time.sleep(POLL)
