"""What the user sees: one progress line per host per stage, a summary table, or one JSON report.

Secret values (the inventory's `secrets:`, secret-named environment values, URL passwords), in every
quoted form, are redacted from everything printed (deploytool.redact); ordinary environment values are
not. Env files are never read by deploytool at all (they are sourced on the hosts)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from deploytool.redact import redact


@dataclass
class StageReport:
    name: str
    seconds: float = 0.0
    status: str = "ok"
    started: float = 0.0  # seconds since the task started, to see what ran at the same time


@dataclass
class HostReport:
    host: str
    app: str
    status: str = "ok"  # ok | failed | skipped
    stages: list[StageReport] = field(default_factory=list)
    error: str | None = None
    release: str | None = None
    revision: str | None = None
    commands: int = 0
    uploads: int = 0
    connections: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def mark_skipped(reports: list[HostReport], reason: str) -> None:
    for r in reports:
        r.status, r.error = "skipped", reason


class Reporter:
    """Thread-safe progress output; quiet when a JSON report will be printed instead."""

    def __init__(self, secrets: Iterable[str] = (), quiet: bool = False, out: TextIO | None = None) -> None:
        self.secrets = list(secrets)
        self.quiet = quiet
        self.out = out or sys.stderr
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            print(self.redact(text), file=self.out, flush=True)

    @contextmanager
    def stage(self, report: HostReport, name: str) -> Iterator[StageReport]:
        t0 = time.monotonic()
        st = StageReport(name, started=round(t0 - self.t0, 3))
        report.stages.append(st)
        try:
            yield st
        except BaseException:
            st.status = "failed"
            raise
        finally:
            st.seconds = round(time.monotonic() - t0, 3)
            self.line(f"{report.host:<10} {report.app:<10} {name:<10} {st.status} {st.seconds:.2f}s")

    def clock(self, report: HostReport) -> StageClock:
        return StageClock(self, report)

    def summary(self, reports: list[HostReport]) -> None:
        if self.quiet:
            return
        releases = any(r.release for r in reports)  # only deploys and rollbacks have one
        rows = [("HOST", "APP", "STATUS", *(("RELEASE", "REVISION") if releases else ()), "SECONDS", "ERROR")]
        for r in reports:
            total = sum(s.seconds for s in r.stages)
            release = (r.release or "-", (r.revision or "-")[:12]) if releases else ()
            rows.append((r.host, r.app, r.status, *release, f"{total:.1f}", r.error or ""))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        with self._lock:
            for row in rows:
                cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]
                print(self.redact("  ".join(cells).rstrip()), file=self.out, flush=True)

    def json(self, reports: list[HostReport], task: str, dry_run: bool = False,
             extra: Mapping[str, Any] | None = None) -> None:
        """The one report shape of every task (docs/report.md), redacted."""
        print(json_text(envelope(reports, task, dry_run, extra), self.secrets), flush=True)


def json_text(data: Any, secrets: Iterable[str] = ()) -> str:
    """A report as JSON, every string in it redacted, never the JSON text itself: a secret that happens
    to read `false` or `2` must not turn `"ok": false` into invalid JSON."""
    return json.dumps(redact_strings(data, list(secrets)), indent=2)


def redact_strings(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list | tuple):
        return [redact_strings(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact_strings(v, secrets) for k, v in value.items()}
    return value


def envelope(reports: list[HostReport], task: str, dry_run: bool = False,
             extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every task's JSON report: `task`, `ok`, `dry_run`, `hosts` (one HostReport per host and app), then
    what the task adds at the top (e.g. `release` for deploy, `units` for workers.status)."""
    return {"task": task, "ok": all(r.status == "ok" for r in reports), "dry_run": dry_run,
            "hosts": [asdict(r) for r in reports], **(extra or {})}


class StageClock:
    """Times stages that a remote script announces with marker lines, as the lines arrive, so one round
    trip can carry several stages and each still gets its own progress line and duration."""

    def __init__(self, out: Reporter, report: HostReport) -> None:
        self.out = out
        self.report = report
        self.current: StageReport | None = None
        self.t0 = 0.0

    def begin(self, name: str) -> None:
        self.end()
        self.t0 = time.monotonic()
        self.current = StageReport(name, started=round(self.t0 - self.out.t0, 3))
        self.report.stages.append(self.current)

    def end(self, status: str = "ok") -> None:
        st = self.current
        if st is None:
            return
        st.status, st.seconds = status, round(time.monotonic() - self.t0, 3)
        self.current = None
        self.out.line(f"{self.report.host:<10} {self.report.app:<10} {st.name:<10} {st.status} {st.seconds:.2f}s")
