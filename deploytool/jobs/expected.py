"""What the inventory expects a system to see: per queue, processes x threads summed over the hosts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from deploytool.inventory import Inventory, WorkerGroup
from deploytool.jobs.probe import queue_names
from deploytool.jobs.systems import SYSTEMS
from deploytool.kinds import KINDS


def groups(inv: Inventory, app: str, system: str) -> list[tuple[str, WorkerGroup]]:
    """(host, group) for every group of this system's kind the app runs, host by host."""
    found = []
    for host in inv.hosts_for_app(app):
        resolved = inv.apps_on(host)[app]
        found += [(host, g) for g in inv.groups_on(host, resolved) if g.kind == system]
    return found


@dataclass(frozen=True)
class Source:
    """Groups of one system that one probe reads: those sharing the probe's arguments (one Celery app, one
    Dramatiq broker module), since two Celery apps of one app may use two brokers."""

    system: str
    args: tuple[str, ...]
    groups: tuple[tuple[str, WorkerGroup], ...]  # (host, group), host by host

    @property
    def queues(self) -> list[str]:
        return list(dict.fromkeys(n for _, g in self.groups for n in queue_names(g)))


def sources(inv: Inventory, app: str) -> list[Source]:
    found: dict[tuple[str, tuple[str, ...]], list[tuple[str, WorkerGroup]]] = {}
    for system in systems_of(inv, app):
        for host, g in groups(inv, app, system):
            args = tuple(SYSTEMS[system].probe_args(g.command or KINDS[g.kind].program))
            found.setdefault((system, args), []).append((host, g))
    return [Source(system, args, tuple(gs)) for (system, args), gs in found.items()]


def systems_of(inv: Inventory, app: str) -> list[str]:
    """The systems with a reader that the app runs somewhere, in the table's order."""
    kinds = {g.kind for host in inv.hosts_for_app(app) for g in inv.apps_on(host)[app].workers.values()}
    return [name for name in SYSTEMS if name in kinds]


def queues(inv: Inventory, app: str, system: str) -> list[str]:
    """Every queue the app's groups of this system work, in inventory order."""
    names: dict[str, None] = {}
    for _, g in groups(inv, app, system):
        names.update(dict.fromkeys(queue_names(g)))
    return list(names)


def workers(inv: Inventory, app: str, system: str) -> dict[str, int]:
    """Queue → the concurrency the app's workers of this system should show on it."""
    s = SYSTEMS[system]
    expected: dict[str, int] = defaultdict(int)
    for _, g in groups(inv, app, system):
        for name in queue_names(g):
            expected[name] += g.processes * (1 if s.per_process else g.threads or s.default_threads)
    return dict(expected)
