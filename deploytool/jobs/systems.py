"""The worker systems `jobs.status` can read, as one table: which probe reads each, what it needs from
the worker's command, and how its workers' concurrency is counted. Kinds not in the table (sneakers,
command) have no reader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROBES = Path(__file__).resolve().parent / "probes"

ProbeArgs = Callable[[Sequence[str]], list[str]]


def _none(argv: Sequence[str]) -> list[str]:
    return []


def _celery_app(argv: Sequence[str]) -> list[str]:
    """The Celery app the worker loads: `-A NAME`, `--app NAME` or `--app=NAME` (required)."""
    for i, arg in enumerate(argv):
        if arg in ("-A", "--app") and i + 1 < len(argv):
            return [argv[i + 1]]
        if arg.startswith("--app="):
            return [arg.split("=", 1)[1]]
    return ["celery"]  # no -A: Celery looks for a module `celery` in the working directory


def _dramatiq_module(argv: Sequence[str]) -> list[str]:
    """The module that sets the broker: the worker's first argument (`dramatiq app.tasks ...`)."""
    module = next((a for a in argv[1:] if not a.startswith("-")), None)
    return [(module or "tasks").split(":", 1)[0]]


@dataclass(frozen=True)
class System:
    name: str  # the worker kind's name (deploytool.kinds)
    probe: str  # a program in probes/, run with the interpreter of the kind's program
    # The probe's language: the program's shebang is used when it names this language (a venv's python),
    # else this command (Debian's /usr/bin/celery is a shell wrapper around python3).
    language: str = "python3"
    # Arguments the probe needs from the worker's command, before the queue names.
    probe_args: ProbeArgs = _none
    # A process's concurrency when the inventory sets no threads (Sidekiq 7's default -c).
    default_threads: int = 1
    # The broker sees one consumer per process, whatever its threads (Dramatiq on RabbitMQ).
    per_process: bool = False
    # Programs in probes/ sent ahead of the probe, in its language: code several probes share.
    prelude: tuple[str, ...] = ()
    # The readiness probe in probes/ (kinds whose Kind.ready is PROBE; deploytool.commands.ready),
    # run like the probe, with the same prelude and arguments; and whether it notes the system's state
    # with the group's workers stopped (`mark`), which its `check` compares against.
    ready_probe: str | None = None
    ready_marks: bool = False
    # Its probe counts failed jobs (retrying or dead): Celery keeps no record of them without a result
    # backend, so a soak's failure-rate baseline does not need to ask it.
    counts_failures: bool = True

    def source(self, probe: str | None = None) -> str:
        return "\n".join((PROBES / name).read_text() for name in (*self.prelude, probe or self.probe))


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("sidekiq", "sidekiq.rb", language="ruby", default_threads=5),
        System("rq", "rq.py", prelude=("local.py",), ready_probe="ready_rq.py"),
        System("celery", "celery.py", probe_args=_celery_app, prelude=("local.py",), ready_probe="ready_celery.py",
               counts_failures=False),
        System("dramatiq", "dramatiq.py", probe_args=_dramatiq_module, per_process=True,
               ready_probe="ready_dramatiq.py", ready_marks=True),
    )
}
