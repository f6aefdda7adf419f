"""Readings of each app's systems through its hosts (each source through the first host that answers,
all of a host's probes in one round trip), turned into `jobs.status` rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from deploytool.errors import HostError
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.jobs import expected, probe
from deploytool.jobs.model import QueueStatus, Reading
from deploytool.jobs.systems import SYSTEMS
from deploytool.remote import Session, connect, last_lines


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

    def drop(self, host: str) -> None:
        """Forget a connection that failed: the next `get` connects anew."""
        session = self.open.pop(host, None)
        if session is not None:
            session.close()

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


def gather(inv: Inventory, apps: list[str], hosts: list[str] | None = None, pool: Sessions | None = None,
           failures_only: bool = False
           ) -> tuple[list[QueueStatus], list[tuple[str, str]], dict[tuple[str, str], str]]:
    """Every app's rows; the (app, system) pairs read; those that could not be read, with why.
    `pool`: connections to reuse (a soak's readings), else opened and closed here. `failures_only`:
    only the systems that count failed jobs."""
    rows: list[QueueStatus] = []
    tried: list[tuple[str, str]] = []
    errors: dict[tuple[str, str], str] = {}
    with sessions(inv) if pool is None else nullcontext(pool) as pool:
        for name in apps:
            found = [s for s in expected.sources(inv, name) if SYSTEMS[s.system].counts_failures or not failures_only]
            tried += [(name, src.system) for src in found]
            readings, failed = read(pool, name, found, hosts)
            for reading in readings:
                rows += rows_of(inv, name, reading)
            for src, error in failed:
                key = (name, src.system)
                errors[key] = f"{errors[key]}; {error}" if key in errors else error
    return rows, [k for k in dict.fromkeys(tried) if k not in errors], errors


def read(pool: Sessions, app: str, sources: list[expected.Source], hosts: list[str] | None = None
         ) -> tuple[list[Reading], list[tuple[expected.Source, str]]]:
    """Each source's reading for the app, through the first of its hosts that can be reached (every
    source a host can read in one round trip, side by side); the sources that could not be read, with
    why."""
    inv = pool.inv
    pending = list(sources)
    readings: list[Reading] = []
    errors: list[tuple[expected.Source, str]] = []
    for host in inv.hosts_for_app(app):
        here = [(src, g) for src in pending if (g := _group_on(src, host)) is not None]
        if (hosts is not None and host not in hosts) or not here:
            continue
        session = pool.get(host)
        if session is None:
            continue
        resolved = inv.apps_on(host)[app]
        commands = [probe.command(resolved, g, SYSTEMS[src.system], src.queues, host) for src, g in here]
        out = session.run(side_by_side(commands), "jobs", check=False)
        for (src, _), result in zip(here, split_side_by_side(host, out.stdout, len(here)), strict=True):
            if isinstance(result, Reading):
                readings.append(result)
            else:
                errors.append((src, result))
            pending.remove(src)
    for src in pending:
        tried = [pool.unreachable[h] for h, _ in src.groups if h in pool.unreachable]
        errors.append((src, f"no host answered: {'; '.join(dict.fromkeys(tried))}" if tried
                       else "no selected host runs it"))
    return readings, errors


def _group_on(source: expected.Source, host: str) -> WorkerGroup | None:
    return next((g for h, g in source.groups if h == host), None)


PROBE = "@@deploytool-probe"


def side_by_side(commands: list[str]) -> str:
    """Shell text running the probes at once (Celery's waits for its nodes' replies), then printing
    each one's exit code, output and the end of its stderr, in order."""
    lines = ["d=$(mktemp -d) || exit 1"]
    lines += [f'( {text}\n) >"$d/{i}" 2>"$d/{i}.err" &\np{i}=$!' for i, text in enumerate(commands)]
    for i in range(len(commands)):
        lines.append(f'wait "$p{i}"; echo "{PROBE} $?"; cat "$d/{i}"; echo; echo {PROBE}-stderr; '
                     f'tail -n 3 "$d/{i}.err"')
    lines.append('rm -rf "$d"')
    return "\n".join(lines)


def split_side_by_side(host: str, out: str, count: int) -> list[Reading | str]:
    """Each probe's Reading, or why it failed (exit code and stderr, or unreadable output)."""
    chunks = out.split(PROBE + " ")[1:]
    results: list[Reading | str] = []
    for chunk in chunks[:count]:
        code, _, rest = chunk.partition("\n")
        stdout, _, stderr = rest.partition(PROBE + "-stderr\n")
        if code.strip() != "0":
            results.append(f"{host}: exit {code.strip()}: {last_lines(stderr or stdout)}")
            continue
        try:
            results.append(probe.parse(host, stdout))
        except probe.ProbeOutputError as e:
            results.append(f"{host}: {e}")
    results += [f"{host}: no output from the probe"] * (count - len(results))
    return results


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


def rows_of(inv: Inventory, app: str, reading: Reading) -> list[QueueStatus]:
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


def read_here(session: Session, inv: Inventory, app: App, groups: list[WorkerGroup]) -> list[Reading]:
    """Every source among `groups`, read through this host in one round trip. A probe that fails (Redis
    unreachable, no release yet) is left out: callers show what they could read."""
    host = session.host.name
    names = {g.name for g in groups}
    commands = []
    for source in expected.sources(inv, app.name):
        group = next((g for h, g in source.groups if h == host and g.name in names), None)
        if group is not None:
            commands.append(probe.command(app, group, SYSTEMS[source.system], source.queues, host))
    if not commands:
        return []
    out = session.run(side_by_side(commands), "status processes", check=False).stdout
    return [r for r in split_side_by_side(host, out, len(commands)) if isinstance(r, Reading)]
