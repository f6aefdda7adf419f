"""`fab jobs.status`: queues and workers as each worker system sees them, read through the hosts."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.errors import InputError
from deploytool.jobs import collect, expected, formats, thresholds
from deploytool.jobs.model import QueueStatus
from deploytool.tasks.options import command, load, select_targets, split_names


def _number(option: str, value: str | None, whole: bool) -> float | None:
    if value is None:
        return None
    try:
        return int(value) if whole else float(value)
    except ValueError:
        kind = "a whole number" if whole else "a number of seconds"
        raise InputError(f"--{option}: must be {kind} (got {value!r})") from None


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
    inv = load(c, inventory)
    if json and prometheus:
        raise InputError("--json and --prometheus: choose one output")
    limits = thresholds.Thresholds(
        max_latency=_number("max-latency", max_latency, whole=False),
        max_dead=None if max_dead is None else int(_number("max-dead", max_dead, whole=True) or 0),
        max_failed_increase=(None if max_failed_increase is None
                             else int(_number("max-failed-increase", max_failed_increase, whole=True) or 0)),
    )
    targets = select_targets(inv, host, app)
    apps = list(dict.fromkeys(t.app.name for t in targets))
    only = split_names(host) or None
    rows: list[QueueStatus] = []
    read: list[tuple[str, str]] = []
    errors: dict[tuple[str, str], str] = {}
    with collect.sessions(inv) as pool:
        for name in apps:
            sources = expected.sources(inv, name)
            read += [(name, src.system) for src in sources]
            readings, failed = collect.read(pool, name, sources, only)
            for reading in readings:
                rows += collect.rows(inv, name, reading)
            for src, error in failed:
                key = (name, src.system)
                errors[key] = f"{errors[key]}; {error}" if key in errors else error
    read = [k for k in dict.fromkeys(read) if k not in errors]
    increase: dict[str, int] = {}
    if limits.max_failed_increase is not None:
        path = Path(state) if state else thresholds.default_state_path(inv.path)
        previous = thresholds.load_state(path)
        increase = thresholds.increases(rows, previous)
        thresholds.save_state(path, rows, previous)
    outcome = formats.Outcome(rows, read, errors, increase, thresholds.check(rows, limits, increase))
    if json:
        print(jsonlib.dumps(formats.json_report(outcome), indent=2))
    elif prometheus:
        print(formats.prometheus(outcome), end="")
    else:
        print(formats.table(outcome))
    if not outcome.ok:
        raise Exit(code=1)


jobs = Collection("jobs", status)
