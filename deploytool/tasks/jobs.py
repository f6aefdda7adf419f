"""`fab jobs.status`: queues and workers as each worker system sees them, read through the hosts."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.errors import InputError
from deploytool.report import json_text
from deploytool.tasks.options import command, load, select_targets, split_names


def _whole(option: str, value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        raise InputError(f"--{option}: must be a whole number (got {value!r})") from None


def _seconds(option: str, value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        raise InputError(f"--{option}: must be a number of seconds (got {value!r})") from None


@command(
    host="read through these hosts only (default: the first host of each app that answers)",
    prometheus="print node-exporter textfile metrics instead of the table",
    max_latency="exit 1 if a queue's oldest job has waited longer (seconds)",
    max_dead="exit 1 if a queue holds more dead/failed jobs",
    max_failed_increase="exit 1 if a queue gained more dead/failed jobs since the last run (see --state)",
    state="file keeping the last run's counts for --max-failed-increase "
          "(default: ~/.local/state/deploytool/jobs/<inventory>.json)",
)
def status(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
           json: bool = False, prometheus: bool = False, max_latency: str | None = None,
           max_dead: str | None = None, max_failed_increase: str | None = None, state: str | None = None) -> None:
    """Per app and queue: queued, latency, running, retrying/scheduled, dead, workers seen vs expected."""
    from deploytool import task_reports
    from deploytool.jobs import collect, formats, thresholds

    inv = load(c, inventory)
    if json and prometheus:
        raise InputError("--json and --prometheus: choose one output")
    limits = thresholds.Thresholds(max_latency=_seconds("max-latency", max_latency),
                                   max_dead=_whole("max-dead", max_dead),
                                   max_failed_increase=_whole("max-failed-increase", max_failed_increase))
    targets = select_targets(inv, host, app)
    apps = list(dict.fromkeys(t.app.name for t in targets))
    rows, read, errors = collect.gather(inv, apps, split_names(host) or None)
    increase: dict[str, int] = {}
    if limits.max_failed_increase is not None:
        increase = thresholds.since_last_run(Path(state) if state else thresholds.default_state_path(inv.path),
                                             rows)
    outcome = formats.Outcome(rows, read, errors, increase, thresholds.check(rows, limits, increase))
    if json:
        print(json_text(task_reports.jobs_status(formats.app_reports(outcome, apps),
                                                            formats.json_report(outcome))))
    elif prometheus:
        print(formats.prometheus(outcome), end="")
    else:
        print(formats.table(outcome))
    if not outcome.ok:
        raise Exit(code=1)


# Invoke would give --max-failed-increase the short flag `--` (its letters are taken): long flags only.
status.auto_shortflags = False

jobs = Collection("jobs", status)
