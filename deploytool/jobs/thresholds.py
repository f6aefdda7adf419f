"""The limits that make `jobs.status` exit 1 (a CI gate, a cron check), and the state file that the
`--max-failed-increase` limit compares against.

The state is kept on the machine running fab, not on a host: the probe may run on a different host from
one run to the next (the first that answers), and a host's copy would then be stale. It records, per
app/system/queue, the dead/failed count of the last run; the first run only records it. A CI runner
that starts empty each time must keep the file between runs (a cache) or pass `--state` to a lasting
path."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploytool.errors import InputError
from deploytool.jobs.model import QueueStatus


@dataclass(frozen=True)
class Thresholds:
    max_latency: float | None = None  # seconds the oldest waiting job may have waited
    max_dead: int | None = None  # dead/failed jobs a queue may hold
    max_failed_increase: int | None = None  # new dead/failed jobs since the last run

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 0:
                raise InputError(f"--{name.replace('_', '-')}: must not be negative (got {value})")


@dataclass(frozen=True)
class Violation:
    key: str  # app/system/queue
    what: str  # latency | dead | failed_increase
    value: float
    limit: float

    def __str__(self) -> str:
        unit = "s" if self.what == "latency" else ""
        label = self.what.replace("_", " ")
        return f"{self.key}: {label} {self.value:g}{unit} > {self.limit:g}{unit}"


def increases(rows: Sequence[QueueStatus], previous: Mapping[str, int]) -> dict[str, int]:
    """New dead/failed jobs per queue since the last run (queues without a last run are left out).
    A count that went down (jobs deleted or retried by hand) is no increase."""
    return {r.key: max(r.counts.dead - previous[r.key], 0) for r in rows
            if r.key in previous and r.counts.dead is not None}


def check(rows: Sequence[QueueStatus], limits: Thresholds, increase: Mapping[str, int]) -> list[Violation]:
    found: list[Violation] = []
    for r in rows:
        latency, dead = r.counts.latency, r.counts.dead
        if limits.max_latency is not None and latency is not None and latency > limits.max_latency:
            found.append(Violation(r.key, "latency", latency, limits.max_latency))
        if limits.max_dead is not None and dead is not None and dead > limits.max_dead:
            found.append(Violation(r.key, "dead", dead, limits.max_dead))
        grown = increase.get(r.key)
        if limits.max_failed_increase is not None and grown is not None and grown > limits.max_failed_increase:
            found.append(Violation(r.key, "failed_increase", grown, limits.max_failed_increase))
    return found


def default_state_path(inventory: Path) -> Path:
    """Per inventory, under the user's state directory (XDG_STATE_HOME, else ~/.local/state)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    name = str(inventory.resolve()).strip("/").replace("/", "_")
    return base / "deploytool" / "jobs" / f"{name}.json"


def load_state(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the jobs state file: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.get("dead", {}).values()):
        raise InputError(f"{path}: not a deploytool jobs state file (remove it to start again)")
    return dict(data.get("dead", {}))


def save_state(path: Path, rows: Sequence[QueueStatus], previous: Mapping[str, int]) -> None:
    """Record this run's counts (queues not read this time keep their last count); written atomically."""
    dead = {**previous, **{r.key: r.counts.dead for r in rows if r.counts.dead is not None}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump({"dead": dead}, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError as e:
        raise InputError(f"{path}: cannot write the jobs state file: {e.strerror}") from None


def since_last_run(path: Path, rows: Sequence[QueueStatus]) -> dict[str, int]:
    """The increase per queue since the run the state file records; this run is recorded in its place."""
    previous = load_state(path)
    save_state(path, rows, previous)
    return increases(rows, previous)
