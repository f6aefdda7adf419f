"""Readings of each app's systems, through one host of the app per system (the first that answers),
turned into `jobs.status` rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from deploytool.errors import HostError
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.jobs import expected, probe
from deploytool.jobs.model import QueueStatus, Reading
from deploytool.jobs.systems import SYSTEMS
from deploytool.remote import Session, connect


@dataclass
class Sessions:
    """One connection per host, opened on first use and reused; a host that cannot be reached is
    remembered so it is not tried again."""

    inv: Inventory
    open: dict[str, Session] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)

    def get(self, host: str) -> Session | None:
        if host in self.open:
            return self.open[host]
        if host in self.unreachable:
            return None
        try:
            self.open[host] = connect(self.inv.hosts[host])
        except HostError as e:
            self.unreachable[host] = str(e)
            return None
        return self.open[host]

    def close(self) -> None:
        for s in self.open.values():
            s.close()


@contextmanager
def sessions(inv: Inventory) -> Iterator[Sessions]:
    pool = Sessions(inv)
    try:
        yield pool
    finally:
        pool.close()


def read(pool: Sessions, app: str, source: expected.Source, hosts: list[str] | None = None) -> Reading:
    """The source's reading for the app, through the first of its hosts that can be reached.

    Raises HostError naming the host when the probe fails there, or every host when none answers."""
    first: dict[str, WorkerGroup] = {}
    for h, g in source.groups:
        if hosts is None or h in hosts:
            first.setdefault(h, g)
    if not first:
        raise HostError(f"no selected host runs {source.system} for {app}")
    tried: list[str] = []
    for host, group in first.items():
        session = pool.get(host)
        if session is None:
            tried.append(pool.unreachable[host])
            continue
        return read_on(session, pool.inv.apps_on(host)[app], group, source.system, source.queues)
    raise HostError(f"no host answered: {'; '.join(tried)}")


def read_on(session: Session, app: App, group: WorkerGroup, system: str, queues: list[str]) -> Reading:
    """Run the system's probe on this host, with this group's interpreter and environment."""
    stage = f"jobs {system}"
    r = session.run(probe.command(app, group, SYSTEMS[system], queues, session.host.name), stage, check=False)
    if r.exited != 0:
        raise session.error(f"{system} probe", stage, r)
    try:
        return probe.parse(session.host.name, r.stdout)
    except probe.ProbeOutputError as e:
        raise HostError(f"{session.host.name}: {stage}: {e}") from None


def rows(inv: Inventory, app: str, reading: Reading) -> list[QueueStatus]:
    want = expected.workers(inv, app, reading.system)
    out = []
    for counts in reading.queues:
        on_queue = [w for w in reading.workers if counts.name in w.queues]
        seen: int | None = sum(w.concurrency for w in on_queue) if reading.workers_known else None
        if counts.consumers is not None:
            seen = counts.consumers
        out.append(QueueStatus(
            app=app, system=reading.system, host=reading.host, counts=counts,
            workers=seen, workers_expected=want.get(counts.name, 0),
            quiet=sum(1 for w in on_queue if w.quiet),
        ))
    return out


SEPARATOR = "@@deploytool-probe-end"


def read_here(session: Session, inv: Inventory, app: App, groups: list[WorkerGroup]) -> list[Reading]:
    """Every source among `groups`, read through this host in one round trip, the probes side by side
    (Celery's waits for its nodes' replies). A probe that fails (Redis unreachable, no release yet) is
    left out: callers show what they could read."""
    host = session.host.name
    names = {g.name for g in groups}
    commands = []
    for source in expected.sources(inv, app.name):
        group = next((g for h, g in source.groups if h == host and g.name in names), None)
        if group is not None:
            commands.append(probe.command(app, group, SYSTEMS[source.system], source.queues, host))
    if not commands:
        return []
    lines = ['d=$(mktemp -d) || exit 1']
    lines += [f"( {text}\n) >\"$d/{i}\" 2>/dev/null &" for i, text in enumerate(commands)]
    lines += ["wait"] + [f'cat "$d/{i}"; echo; echo {SEPARATOR}' for i in range(len(commands))]
    lines.append('rm -rf "$d"')
    out = session.run("\n".join(lines), "status processes", check=False).stdout
    readings = []
    for chunk in out.split(SEPARATOR)[:-1]:
        try:
            readings.append(probe.parse(host, chunk))
        except probe.ProbeOutputError:
            continue
    return readings
