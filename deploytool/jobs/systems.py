"""The worker systems `jobs.status` can read, as one table: which probe reads each and how its workers'
concurrency is counted. Kinds not in the table (sneakers, command) have no reader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROBES = Path(__file__).resolve().parent / "probes"


@dataclass(frozen=True)
class System:
    name: str  # the worker kind's name (deploytool.kinds)
    probe: str  # a program in probes/, run with the interpreter of the kind's program
    # A process's concurrency when the inventory sets no threads (Sidekiq 7's default -c).
    default_threads: int = 1

    def source(self) -> str:
        return (PROBES / self.probe).read_text()


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("sidekiq", "sidekiq.rb", default_threads=5),
        System("rq", "rq.py"),
    )
}
