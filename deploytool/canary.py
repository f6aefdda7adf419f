"""The soak of a deploy's batch (`fab deploy --canary N|P% --soak SECONDS`): the batch's hosts are watched
for the soak time, read from the hosts and the brokers themselves, and each gate trips on what it sees.

Gates (docs/canary.md):
- crash loop: a worker unit of the batch restarts (its NRestarts grows) or leaves `active`;
- workers lost: a queue's workers as its broker sees them (the jobs.status probes) fewer than the
  inventory expects, in two readings in a row (one missed reply is not a lost worker);
- failures: new retrying and dead jobs on the app's queues since the soak began above
  `--max-failed-increase`, plus, for a queue already failing before the deploy, its own rate then;
- health: the app's `health:` commands, run on each host of the batch in the workers' runtime context
  and release, at the end of the soak: exit 0 is healthy.

Reads only: nothing here changes a host; the rollback is the rollback plan (deploytool.operations.releases)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploytool import context
from deploytool.commands import running
from deploytool.engine.rolling import CANCELLED
from deploytool.errors import HostError
from deploytool.inventory import App, Inventory
from deploytool.jobs import collect
from deploytool.jobs.model import RECENT
from deploytool.operations.workers import Workers, unit_states
from deploytool.remote import Expand, connect, join, last_lines

CRASH_LOOP, WORKERS_LOST, FAILURES, HEALTH = "crash loop", "workers lost", "failures", "health"
INTERVAL = 5.0  # seconds between two readings during a soak


@dataclass(frozen=True)
class Gates:
    soak: float
    max_failed_increase: int = 0

    def describe(self, apps: Sequence[App]) -> list[str]:
        """The gates and thresholds, as --dry-run prints them."""
        hooks = [h for a in apps for h in a.health]
        return [
            f"soak {self.soak:g} s, a reading every {INTERVAL:g} s; the batch is rolled back when a gate trips",
            f"{CRASH_LOOP}: a worker unit of the batch restarts or leaves active",
            f"{WORKERS_LOST}: fewer workers on a queue than expected, as its broker sees them, twice in a row",
            f"{FAILURES}: more than {self.max_failed_increase} new retrying/dead jobs on a queue during the "
            "soak (a queue failing before the deploy: beyond its own rate)",
            f"{HEALTH}: " + ("; ".join(hooks) + " (exit 0 = healthy, on each host of the batch)" if hooks
                             else "no health: commands"),
        ]


@dataclass(frozen=True)
class Reading:
    at: float
    units: dict[str, tuple[str, int]]  # "host unit" -> (active state, restarts)
    workers: dict[str, tuple[int, int]]  # "app/system/queue" -> (seen by the broker, expected)
    failed: dict[str, int]  # "app/system/queue" -> retrying + dead
    unread: dict[str, str] = field(default_factory=dict)  # what could not be read, and why
    # "app/system/queue" -> of those, the jobs that failed within the last RECENT seconds, where known
    recent: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Trip:
    gate: str
    readings: list[str]

    def data(self) -> dict[str, Any]:
        return {"gate": self.gate, "readings": self.readings}


Target = tuple[str, App]  # (host, app) of the batch


def read(inv: Inventory, batch: Sequence[Target], pool: collect.Sessions, failures_only: bool = False) -> Reading:
    """The batch's units (on its hosts) and the apps' queues (through the brokers), over `pool`'s
    connections (one per host for the whole soak; one that fails is opened anew next time).
    `failures_only`: only the failed jobs' counts (the baseline's readings, quicker)."""
    at = time.time()
    units: dict[str, tuple[str, int]] = {}
    unread: dict[str, str] = {}
    for host, app in [] if failures_only else batch:
        session = pool.get(host)
        if session is None:
            unread[host] = pool.unreachable.pop(host, "unreachable")  # tried again next time
            continue
        try:
            for u in unit_states(session, Workers(inv, host, app)):
                units[f"{host} {u.unit}"] = (u.active, u.restarts)
        except HostError as e:
            unread[host] = str(e)
            pool.drop(host)
    try:
        rows, _, errors = collect.gather(inv, sorted({app.name for _, app in batch}), pool=pool,
                                         failures_only=failures_only)
    except HostError as e:
        for host in list(pool.open):
            pool.drop(host)
        return Reading(at, units, {}, {}, {**unread, "brokers": str(e)})
    workers = {r.key: (r.workers, r.workers_expected) for r in rows if r.workers is not None}
    failed = {r.key: (r.counts.retrying or 0) + (r.counts.dead or 0) for r in rows}
    recent = {r.key: r.counts.failed_recently for r in rows if r.counts.failed_recently is not None}
    unread.update({f"{a}/{s}": why for (a, s), why in errors.items()})
    return Reading(at, units, workers, failed, unread, recent)


def rates(first: Reading, second: Reading) -> dict[str, float]:
    """Per queue, new retrying/dead jobs per second between two readings taken before the deploy."""
    span = second.at - first.at
    return {key: max(0, n - first.failed[key]) / span for key, n in second.failed.items()
            if key in first.failed and span > 0}


def trips(start: Reading, previous: Reading, now: Reading, gates: Gates,
          failing: dict[str, float] | None = None) -> list[Trip]:
    """The gates tripped by `now`, the soak having begun at `start` (`previous`: the reading before).
    `failing`: queues already failing before the deploy, with their rate (per second): allowed that
    many more."""
    found: list[Trip] = []
    crash = [f"{key}: {state}, {restarts} restarts (at the start of the soak: {start.units[key][0]}, "
             f"{start.units[key][1]})"
             for key, (state, restarts) in now.units.items()
             if key in start.units and (state != "active" or restarts > start.units[key][1])]
    crash += [f"{key}: gone (was {state})" for key, (state, _) in start.units.items() if key not in now.units
              and key.split(" ", 1)[0] not in now.unread]
    if crash:
        found.append(Trip(CRASH_LOOP, crash))
    lost = [f"{key}: {seen} workers seen, {expected} expected (before: {previous.workers[key][0]})"
            for key, (seen, expected) in now.workers.items()
            if seen < expected and key in previous.workers and previous.workers[key][0] < expected]
    if lost:
        found.append(Trip(WORKERS_LOST, lost))
    failed = []
    for key, count in now.failed.items():
        if key not in start.failed:
            continue
        new = count - start.failed[key]
        allowed = gates.max_failed_increase + (failing or {}).get(key, 0.0) * (now.at - start.at)
        if new > allowed:
            failed.append(f"{key}: {new} new retrying/dead jobs during the soak, {allowed:.0f} allowed "
                          f"({start.failed[key]} -> {count})")
    if failed:
        found.append(Trip(FAILURES, failed))
    return found


def health(inv: Inventory, batch: Sequence[Target]) -> Trip | None:
    """Run each app's `health:` commands on the batch's hosts, in the workers' runtime context and the
    release they run; the first that fails trips the gate."""
    bad = []
    for host, app in batch:
        if not app.health:
            continue
        groups = inv.groups_on(host, app)
        where = running.release_of(app, groups[0]) if groups else f"release={app.current_path}"
        try:
            session = connect(inv.hosts[host])
        except HostError as e:
            bad.append(f"{host}: {e}")
            continue
        try:
            for command in app.health:
                argv = context.in_context(inv, host, app, ["sh", "-c", command], groups[0] if groups else None,
                                          cwd=Expand("$" + running.VAR))
                r = session.run(where + "\n" + join(argv), "health", check=False)
                if r.exited != 0:
                    bad.append(f"{host}: {command}: exit {r.exited}: {last_lines(r.stderr or r.stdout)}")
        finally:
            session.close()
    return Trip(HEALTH, bad) if bad else None


def baseline(inv: Inventory, batch: Sequence[Target], pool: collect.Sessions,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
    """Before the deploy switches anything: the rate at which each queue already fails. From one
    reading when each queue holding failed jobs says when they failed (its jobs that failed within the
    last RECENT seconds); else from two readings of the failed jobs INTERVAL apart (the hosts stage
    their release meanwhile)."""
    first = read(inv, batch, pool, failures_only=True)
    if not first.unread and all(key in first.recent for key, n in first.failed.items() if n):
        # Each queue holding failed jobs says how many failed within RECENT seconds (a queue holding none
        # had none fail lately: a failed job waits in the retry set or the dead/failed registry).
        return {key: n / RECENT for key, n in first.recent.items() if n}
    sleep(max(0.0, first.at + INTERVAL - time.time()))
    return rates(first, read(inv, batch, pool, failures_only=True))


def soak(inv: Inventory, batch: Sequence[Target], gates: Gates, failing: dict[str, float],
         line: Callable[[str], None], pool: collect.Sessions, since: float | None = None,
         sleep: Callable[[float], None] = time.sleep) -> tuple[Trip | None, list[dict[str, Any]]]:
    """Watch the batch for the soak time from `since` (when its workers were ready again; default now):
    a reading every INTERVAL, the last one started so that it ends at the soak's end (a reading takes
    a few seconds: Celery's nodes are given time to reply); the first trip ends it. Returns the trip
    (None: every gate held) and every reading, for the report."""
    start = previous = read(inv, batch, pool)
    took = time.time() - start.at  # how long a reading takes
    readings = [summary(start, start)]
    line(f"soak: {gates.soak:g} s on {', '.join(sorted({h for h, _ in batch}))}")
    deadline = (since if since is not None else start.at) + gates.soak
    while time.time() + took < deadline:
        if CANCELLED.is_set():
            return Trip("interrupted", ["Ctrl-C or SIGTERM during the soak"]), readings
        sleep(min(INTERVAL, max(0.0, deadline - took - time.time())))
        now = read(inv, batch, pool)
        took = time.time() - now.at
        readings.append(summary(start, now))
        tripped = trips(start, previous, now, gates, failing)
        if tripped:
            return tripped[0], readings
        previous = now
    sleep(max(0.0, deadline - time.time()))  # the last reading ended early: the soak lasts its time
    return health(inv, batch), readings


def summary(start: Reading, now: Reading) -> dict[str, Any]:
    """One reading as the report shows it: seconds into the soak, restarts per unit since its start,
    workers seen/expected and new failed jobs per queue, what could not be read."""
    return {
        "seconds": round(now.at - start.at, 1),
        "units": {k: {"active": a, "restarts": r - start.units.get(k, (a, r))[1]} for k, (a, r) in now.units.items()},
        "workers": {k: {"seen": s, "expected": e} for k, (s, e) in now.workers.items()},
        "new_failed": {k: n - start.failed.get(k, n) for k, n in now.failed.items()},
        "unread": now.unread,
    }
