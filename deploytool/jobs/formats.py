"""`jobs.status` output: a table for people, JSON for programs, the Prometheus textfile format for
node-exporter's textfile collector (write it to a temporary file and rename it into place)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from deploytool.jobs.model import QueueStatus
from deploytool.jobs.thresholds import Violation
from deploytool.report import HostReport


@dataclass(frozen=True)
class Outcome:
    """Everything one `jobs.status` run found."""

    rows: Sequence[QueueStatus]
    read: Sequence[tuple[str, str]]  # (app, system) read successfully
    errors: Mapping[tuple[str, str], str]  # (app, system) → why it could not be read
    increase: Mapping[str, int] = field(default_factory=dict)
    violations: Sequence[Violation] = ()

    @property
    def ok(self) -> bool:
        return not self.errors and not self.violations


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def table(o: Outcome) -> str:
    rows = [("APP", "SYSTEM", "QUEUE", "QUEUED", "LATENCY", "RUNNING", "RETRY", "SCHED", "DEAD", "NEW",
             "WORKERS", "READ ON")]
    for r in o.rows:
        c = r.counts
        workers = f"{_num(r.workers)}/{r.workers_expected}" + (f" ({r.quiet} quiet)" if r.quiet else "")
        latency = None if c.latency is None else round(c.latency, 1)
        rows.append((r.app, r.system, c.name, str(c.queued), _num(latency, "s"), _num(c.running),
                     _num(c.retrying), _num(c.scheduled), _num(c.dead), _num(o.increase.get(r.key)), workers,
                     r.host))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"error: {app}: {system}: {e}" for (app, system), e in o.errors.items()]
    lines += [f"over threshold: {v}" for v in o.violations]
    return "\n".join(lines)


def json_report(o: Outcome) -> dict[str, Any]:
    return {
        "ok": o.ok,
        "queues": [{"app": r.app, "system": r.system, "queue": r.counts.name, "read_on": r.host,
                    **{k: v for k, v in asdict(r.counts).items() if k != "name"},
                    "failed_increase": o.increase.get(r.key), "workers": r.workers,
                    "workers_expected": r.workers_expected, "workers_quiet": r.quiet} for r in o.rows],
        "errors": [{"app": app, "system": system, "error": e} for (app, system), e in o.errors.items()],
        "violations": [{**asdict(v), "message": str(v)} for v in o.violations],
    }


def app_reports(o: Outcome, apps: Sequence[str]) -> list[HostReport]:
    """The host entries of jobs.status's JSON report: one per app, `host` the hosts its systems were
    read through (comma-separated; empty if none answered), failed on an error or a violation;
    details: `systems`, those read."""
    reports = []
    for app in apps:
        read_on = sorted({r.host for r in o.rows if r.app == app})
        problems = [f"{system}: {e}" for (a, system), e in o.errors.items() if a == app]
        problems += [f"over threshold: {v}" for v in o.violations if v.key.split("/", 1)[0] == app]
        reports.append(HostReport(",".join(read_on), app, status="failed" if problems else "ok",
                                  error="; ".join(problems) or None,
                                  details={"systems": [system for a, system in o.read if a == app]}))
    return reports


# name, help, value of a row (None: not reported for that row)
METRICS: list[tuple[str, str, Callable[[QueueStatus, Mapping[str, int]], float | None]]] = [
    ("queued", "Jobs waiting in the queue.", lambda r, i: r.counts.queued),
    ("latency_seconds", "Seconds the oldest waiting job has waited.", lambda r, i: r.counts.latency),
    ("running", "Jobs taken by a worker and not finished.", lambda r, i: r.counts.running),
    ("scheduled", "Jobs to run later.", lambda r, i: r.counts.scheduled),
    ("retrying", "Failed jobs waiting for a retry.", lambda r, i: r.counts.retrying),
    ("deferred", "Jobs waiting on other jobs.", lambda r, i: r.counts.deferred),
    ("reserved", "Jobs prefetched by a worker and not started.", lambda r, i: r.counts.reserved),
    ("dead", "Jobs failed for good (dead set, failed registry, dead-letter queue).", lambda r, i: r.counts.dead),
    ("failed_increase", "New dead/failed jobs since the last run.", lambda r, i: i.get(r.key)),
    ("workers", "Concurrency of the live workers on the queue, as the system sees it.", lambda r, i: r.workers),
    ("workers_expected", "Concurrency the inventory expects on the queue (processes x threads).",
     lambda r, i: r.workers_expected),
    ("workers_quiet", "Worker processes on the queue that take no new jobs.", lambda r, i: r.quiet),
]


def _labels(**labels: str) -> str:
    def escape(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items())) + "}"


def prometheus(o: Outcome) -> str:
    lines: list[str] = []
    for name, text, value in METRICS:
        samples = [(r, v) for r in o.rows if (v := value(r, o.increase)) is not None]
        if not samples:
            continue
        lines += [f"# HELP deploytool_jobs_{name} {text}", f"# TYPE deploytool_jobs_{name} gauge"]
        lines += [f"deploytool_jobs_{name}{_labels(app=r.app, queue=r.counts.name, system=r.system)} {v:g}"
                  for r, v in samples]
    lines += ["# HELP deploytool_jobs_up 1 if the system could be read through a host of the app, else 0.",
              "# TYPE deploytool_jobs_up gauge"]
    lines += [f"deploytool_jobs_up{_labels(app=app, system=system)} 1" for app, system in o.read]
    lines += [f"deploytool_jobs_up{_labels(app=app, system=system)} 0" for app, system in o.errors]
    lines += ["# HELP deploytool_jobs_over_threshold Limits exceeded in this run.",
              "# TYPE deploytool_jobs_over_threshold gauge",
              f"deploytool_jobs_over_threshold {len(o.violations)}"]
    return "\n".join(lines) + "\n"
