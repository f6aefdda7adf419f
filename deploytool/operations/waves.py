"""A deploy in waves (`fab deploy --canary N|P% --soak S`): the canary hosts, then the rest (or, with
`--soak` alone, each batch), each watched wave soaked and its gates read (deploytool.canary) before the
next wave switches.

Every host starts at once and stages its release (upload, code, shared, build), then holds before its
switch (deploytool.engine.execute.Hold): the first wave until the failure rate before the deploy is read,
each later wave until the wave before passed its soak. A wave that fails, or whose gate trips, is rolled
back (the rollback plan: switch back, units, restart, readiness; revisions.log records it) and refuses
the later waves' holds: they remove the release they staged and free their lock, having switched and
restarted nothing. So a healthy canary deploy takes about the soak longer than a plain one."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from deploytool import canary
from deploytool.engine import runner as engine
from deploytool.engine.execute import Hold
from deploytool.engine.rolling import CANCELLED, batch_size, batches
from deploytool.inventory import App, Inventory
from deploytool.jobs import collect
from deploytool.operations.releases import rollback_job
from deploytool.remote import Session
from deploytool.report import HostReport, Reporter


class Target(Protocol):
    """One app on one host (deploytool.tasks.options.Target)."""

    @property
    def host(self) -> str: ...

    @property
    def app(self) -> App: ...


@dataclass(frozen=True)
class Watch:
    """A canary and/or a soak: `canary` hosts first, or every batch, watched."""

    canary: str | None
    soak: float | None  # None: the apps' `soak:`
    max_failed_increase: int
    rollback: bool


def waves_of(hosts: list[str], watch: Watch, batch: str | None) -> list[list[str]]:
    """The canary hosts (N or P%) and the rest; without a canary, the rollout's batches."""
    if watch.canary:
        first = batch_size(watch.canary, len(hosts), default=1)
        waves = [hosts[:first], hosts[first:]]
    else:
        waves = batches(hosts, batch_size(batch, len(hosts), default=0))
    return [w for w in waves if w]


@dataclass
class Waves:
    """One watched deploy: its waves, which of them are soaked, the gates; `run` it."""

    inv: Inventory
    targets: Sequence[Target]
    watch: Watch
    templates: Sequence[Path]
    rollout: engine.Rollout
    out: Reporter
    waves: list[list[str]] = field(init=False)
    soak: float = field(init=False)
    gates: canary.Gates = field(init=False)
    soaks: list[dict[str, Any]] = field(default_factory=list)  # each soak's readings, for the report

    def __post_init__(self) -> None:
        hosts = list(dict.fromkeys(t.host for t in self.targets))
        self.waves = waves_of(hosts, self.watch, self.rollout.batch)
        apps = self.apps
        self.soak = self.watch.soak if self.watch.soak is not None else max(a.soak for a in apps)
        self.gates = canary.Gates(self.soak, self.watch.max_failed_increase)

    @property
    def apps(self) -> list[App]:
        return list({t.app.name: t.app for t in self.targets}.values())

    def watched(self, i: int) -> bool:
        """The canary wave, or with --soak alone every wave."""
        return bool(self.soak) and (not self.watch.canary or i == 0)

    def describe(self) -> dict[str, Any]:
        return {"waves": self.waves, "soak": self.soak, "rollback": self.watch.rollback,
                "gates": self.gates.describe(self.apps)}

    def lines(self) -> list[str]:
        """What a dry run prints before the plans."""
        return [f"wave {i + 1}: {', '.join(w)}" + (f", then a soak of {self.soak:g} s" if self.watched(i) else "")
                for i, w in enumerate(self.waves)] + self.gates.describe(self.apps)

    def run(self, jobs: Sequence[engine.Job], sessions: dict[str, Session]) -> list[HostReport]:
        """Every host's plan at once, each held before its switch; the waves conducted from a thread of
        their own. The reports in job order."""
        holds = [Hold("the failure rate before the deploy is read" if self.watched(0) else "the deploy starts")]
        holds += [Hold(f"{', '.join(self.waves[i - 1])} " + ("passed the soak" if self.watched(i - 1)
                                                             else "restarted"))
                  for i in range(1, len(self.waves))]
        by_host = {h: holds[i] for i, w in enumerate(self.waves) for h in w}
        conductor = Conductor(self, holds)
        thread = threading.Thread(target=conductor.conduct, name="waves", daemon=True)
        thread.start()
        try:
            reports = engine.run(self.inv, list(jobs), self.out, replace(self.rollout, batch=None), sessions,
                                 holds=by_host, done=conductor.finished)
        finally:
            conductor.engine_done.set()
            for hold in holds:  # no host waits for a conductor that failed
                hold.refuse("the deploy's conductor ended")
            try:
                thread.join()
            except KeyboardInterrupt:  # during the last soak: it stops at its next reading
                CANCELLED.set()
                thread.join()
        if conductor.error is not None:
            raise conductor.error
        for r in reports:
            refused = by_host[r.host].refused
            if refused and r.status == "failed" and r.error and r.error.endswith(refused) and unswitched(r):
                r.status, r.error = "skipped", f"not switched: {refused}; the release it staged was removed"
        return reports


def unswitched(r: HostReport) -> bool:
    """The host never switched, and its recovery (the staged release removed, the lock freed) succeeded."""
    return not any(st.name == "switch" or (st.name.startswith("recover:") and st.status != "ok")
                   for st in r.stages)


class Conductor:
    """Releases each wave's hold in turn, waits for its hosts, soaks it; on a failure or a trip rolls it
    back and refuses the later waves. Runs beside the engine, which runs every host's plan."""

    def __init__(self, waves: Waves, holds: list[Hold]) -> None:
        self.w, self.holds = waves, holds
        self.done: dict[str, list[HostReport]] = {}
        self.when: dict[str, float] = {}
        self.changed = threading.Condition()
        self.engine_done = threading.Event()
        self.error: BaseException | None = None

    def finished(self, host: str, reports: list[HostReport]) -> None:
        with self.changed:
            self.done[host], self.when[host] = reports, time.time()
            self.changed.notify_all()

    def conduct(self) -> None:
        try:
            self._conduct()
        except BaseException as e:  # reported by Waves.run; the holds are refused so no host waits
            self.error = e
            self.refuse(0, f"the deploy's conductor failed: {e}")

    def refuse(self, first: int, reason: str) -> None:
        for hold in self.holds[first:]:
            hold.refuse(reason)

    def _conduct(self) -> None:
        w = self.w
        with collect.sessions(w.inv) as pool:
            failing: dict[str, float] = {}
            if w.watched(0):
                batch = self._batch(0)
                failing = canary.baseline(w.inv, batch, pool)
            for i, wave in enumerate(w.waves):
                if CANCELLED.is_set():
                    self.refuse(i, "interrupted (Ctrl-C or SIGTERM)")
                    return
                self.holds[i].release()
                if not self._wait_for(wave):
                    return
                reports = [r for h in wave for r in self.done[h]]
                failed = [r.host for r in reports if r.status != "ok"]
                if failed:
                    self.refuse(i + 1, f"a host of the wave before failed ({', '.join(dict.fromkeys(failed))})")
                    return
                if not w.watched(i):
                    continue
                batch = self._batch(i)
                trip, readings = canary.soak(w.inv, batch, w.gates, failing, w.out.line, pool,
                                             since=max(self.when[h] for h in wave))
                w.soaks.append({"hosts": wave, "seconds": w.soak, "readings": readings,
                                "tripped": trip.data() if trip else None})
                if trip is None:
                    w.out.line(f"soak: every gate held on {', '.join(wave)}")
                    continue
                self.refuse(i + 1, f"canary gate {trip.gate} tripped on {', '.join(wave)}")
                self._tripped(trip, wave, reports)
                return

    def _batch(self, i: int) -> list[tuple[str, App]]:
        return [(t.host, t.app) for t in self.w.targets if t.host in self.w.waves[i]]

    def _wait_for(self, wave: list[str]) -> bool:
        """Until every host of the wave ended its plans (each bounded by its stages' timeouts); False if
        the engine ended first (interrupted)."""
        with self.changed:
            while not all(h in self.done for h in wave):
                if self.engine_done.is_set():
                    return False
                self.changed.wait(0.5)
        return True

    def _tripped(self, trip: canary.Trip, wave: list[str], reports: list[HostReport]) -> None:
        """The wave's hosts back on the release each had (unless --no-rollback), their reports failed
        with the gate and what became of them."""
        w = self.w
        w.out.line(f"soak: gate {trip.gate} tripped on {', '.join(wave)}: {'; '.join(trip.readings)}")
        why = f"canary gate {trip.gate} tripped: {'; '.join(trip.readings)}"
        if w.watch.rollback:
            # Hosts whose first release this was have nothing to go back to: left as they are.
            # Each host's own app (its host overrides: processes, threads), as its deploy had it.
            back = [(r, rollback_job(w.inv, r.host, w.inv.apps_on(r.host)[r.app], r.details["previous_release"],
                                     w.templates, reason=f"canary gate {trip.gate} tripped"))
                    for r in reports if r.details.get("previous_release")]
            undone = engine.run(w.inv, [j for _, j in back], w.out,
                                engine.Rollout(default_batch=1, timeout=w.rollout.timeout))
            for (r, _), b in zip(back, undone, strict=True):
                r.details["rolled_back_to"] = b.release
                r.details["rollback"] = b.status if b.status != "failed" else f"failed: {b.error}"
        for r in reports:
            r.status = "failed"
            r.error = why + undone_text(r, w.watch.rollback)
            r.details["gate"] = trip.data()


def undone_text(r: HostReport, rollback: bool) -> str:
    """What became of a host of a wave whose gate tripped, for its error."""
    state, release = r.details.get("rollback"), r.details.get("rolled_back_to")
    if not rollback:
        return "; left as it is (--no-rollback)"
    if state == "ok":
        return f"; rolled back to release {release}"
    return f"; rollback {state}" if state else "; nothing to roll back to (its first release)"
