"""Workers and queues in an app's Redis DB that belong to another app: found before a deploy, so two
apps configured in different inventories cannot wipe or steal each other's jobs.

A worker is this app's when its systemd unit (known for workers on the probing host, from their
cgroup) is one of the app's units `<app>-<group>@N.service`; elsewhere, when its Sidekiq tag is the
`<app>-<group>-N` deploytool gives it; an RQ worker elsewhere carries no such name, so only its queues
tell (an RQ worker of another app working exactly this app's queue names from a machine that is not
probed cannot be told apart). A queue holding jobs that no group of the app works is another app's.

Checked for the kinds whose keys take no prefix (Sidekiq, RQ): Celery and Dramatiq keep apps apart
with the app's redis_namespace (a key prefix) instead.

The DB is one per app: it is read once per system, through the first selected host that can (`preflight`),
whatever the fleet's size.

An app with `redis_shared: true` shares its DB knowingly: there only another app's workers on one of
this app's queues are refused (they would take its jobs)."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from deploytool.engine.rolling import run
from deploytool.errors import HostError
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.jobs import collect, expected
from deploytool.jobs.model import Reading, SeenWorker
from deploytool.jobs.systems import SYSTEMS
from deploytool.kinds import KINDS, RedisKeys
from deploytool.remote import Session, connect
from deploytool.report import HostReport, Reporter, mark_skipped


def _names(inv: Inventory, app: str, system: str) -> str:
    groups = sorted({g.name for _, g in expected.groups(inv, app, system)})
    return "|".join(re.escape(g) for g in groups) or "(?!)"


def is_ours(inv: Inventory, app: str, system: str, w: SeenWorker) -> bool:
    groups = _names(inv, app, system)
    if w.unit is not None:
        return re.fullmatch(rf"{re.escape(app)}-({groups})@\d+\.service", w.unit) is not None
    if w.tag:
        return re.fullmatch(rf"{re.escape(app)}-({groups})-\d+", w.tag) is not None
    return set(w.queues) <= set(expected.queues(inv, app, system))


def describe(system: str, w: SeenWorker) -> str:
    who = w.tag or w.name
    where = f"{w.unit} on {w.hostname}" if w.unit else f"on {w.hostname or '?'}"
    return f"{system} worker {who} ({where}, queues {','.join(w.queues) or '-'})"


def foreign(inv: Inventory, app: str, reading: Reading, shared: bool = False) -> list[str]:
    """What in the reading belongs to another app, one description each."""
    mine = set(expected.queues(inv, app, reading.system))
    found = [describe(reading.system, w) for w in reading.workers
             if not is_ours(inv, app, reading.system, w) and (not shared or mine & set(w.queues))]
    if not shared:
        found += [f"{reading.system} queue {name} ({n} jobs)" for name, n in reading.other_queues if n]
    return found


def check_host(session: Session, inv: Inventory, app: App, groups: Sequence[WorkerGroup]) -> None:
    """Refuse (Refused) when the app's Redis DB, read through this host, holds another app's workers or
    queues; a probe that cannot read it raises HostError."""
    host = session.host.name
    found: list[str] = []
    for group in groups:
        system = group.kind
        reading = collect.read_on(session, app, group, system, expected.queues(inv, app.name, system))
        found += foreign(inv, app.name, reading, shared=app.redis_shared)
    if found:
        raise Refused(
            f"{host}: redis check: the Redis DB of {app.name} holds another app's "
            f"{'workers' if app.redis_shared else 'workers or queues'}: {'; '.join(found)}. Refusing to "
            "deploy: give each app its own Redis DB (or, for one app's own leftovers, stop those workers "
            "or empty those queues)"
        )


class Refused(HostError):
    """The DB holds another app's workers or queues: no host of the app may be deployed."""


def checked_groups(inv: Inventory, host: str, app: App) -> list[WorkerGroup]:
    """One group per system whose keys take no prefix (Sidekiq, RQ) on this host: where another app in
    the same DB takes or wipes this app's jobs. Kinds with a prefix are kept apart by redis_namespace."""
    first: dict[str, WorkerGroup] = {}
    for g in inv.groups_on(host, app):
        if g.kind in SYSTEMS and KINDS[g.kind].redis_keys is RedisKeys.UNPREFIXED:
            first.setdefault(g.kind, g)
    return list(first.values())


def candidates(inv: Inventory, targets: Sequence[tuple[str, App]]) -> dict[str, list[tuple[str, list[WorkerGroup]]]]:
    """Per app, the selected hosts that can read its DB (inventory order, whatever the order of --host),
    each with its groups to probe there: one per system whose keys take no prefix."""
    order = {h: i for i, h in enumerate(inv.hosts)}
    found: dict[str, list[tuple[str, list[WorkerGroup]]]] = {}
    for host, app in sorted(targets, key=lambda t: order.get(t[0], len(order))):
        groups = checked_groups(inv, host, app)
        if groups:
            found.setdefault(app.name, []).append((host, groups))
    return found


def preflight(inv: Inventory, targets: Sequence[tuple[str, App]], out: Reporter,
              keep: dict[str, Session] | None = None) -> list[HostReport]:
    """The check of every selected app's Redis DB, before anything is deployed; apps at once, each
    through its hosts in order until every system was read: a host that cannot be reached or cannot read
    the DB is passed over (the deploy reports it on its own). Reports: one per host that read a DB; when
    a DB holds another app's workers or queues, or no host could read it, one per selected (host, app)
    of that app as well, none started. `keep`: the connections opened here are left open in it, for
    the deploy to use (one connection per host per deploy)."""
    apps = {a.name: a for _, a in targets}
    where = candidates(inv, targets)
    sessions: dict[str, Session] = {}
    dead: set[str] = set()
    lock = threading.Lock()
    reports: dict[str, list[HostReport]] = {name: [] for name in where}

    def session_of(host: str, report: HostReport) -> Session | None:
        with lock:  # two apps on one host share its connection
            if host in dead:
                return None
            if host not in sessions:
                try:
                    with out.stage(report, "connect"):
                        sessions[host] = connect(inv.hosts[host])
                except HostError as e:
                    dead.add(host)
                    report.status, report.error = "failed", str(e)
                    return None
            return sessions[host]

    def check_app(name: str) -> bool:
        todo = {g.kind for _, groups in where[name] for g in groups}
        errors: list[str] = []
        for host, groups in where[name]:
            wanted = [g for g in groups if g.kind in todo]
            if not wanted:
                continue
            r = HostReport(host, name)
            session = session_of(host, r)
            if session is None:
                errors.append(r.error or f"{host}: unreachable")
                continue
            try:
                with out.stage(r, "redis check"):
                    check_host(session, inv, apps[name], wanted)
            except Refused as e:
                r.status, r.error = "failed", out.redact(str(e))
                reports[name].append(r)
                return False
            except HostError as e:  # this host cannot read the DB: another may
                errors.append(out.redact(str(e)))
                continue
            reports[name].append(r)
            todo -= {g.kind for g in wanted}
            if not todo:
                return True
        failed = HostReport(where[name][0][0], name)
        failed.status = "failed"
        failed.error = f"redis check: no selected host could read the Redis DB of {name}: {'; '.join(errors)}"
        reports[name].append(failed)
        return False

    try:
        run(list(where), check_app, lambda name, reason: mark_skipped(reports[name], reason),
            max_fail=len(where))
    finally:
        if keep is None:
            for s in sessions.values():
                s.close()
        else:
            keep.update(sessions)
    checked = [r for rs in reports.values() for r in rs]
    refused = {r.app: r for r in checked if r.status != "ok"}
    for host, app in targets:
        if app.name in refused and not any(r.host == host and r.app == app.name for r in checked):
            skipped = HostReport(host, app.name)
            mark_skipped([skipped], f"not started: the redis check of {app.name} through "
                                    f"{refused[app.name].host} failed")
            checked.append(skipped)
    return checked
