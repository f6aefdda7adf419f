"""The worker kinds deploytool knows, as one table of data.

Each kind says how its worker is started (program and concurrency/queue flags), how it is quieted
(stops fetching new jobs while finishing running ones), how it is stopped and how long it may take,
and how systemd must supervise it. Tasks and templates read this table; they never branch on a kind's
name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum


class Quiet(Enum):
    """How a kind stops fetching new jobs without stopping."""

    SIGNAL = "signal"  # a signal to the main process (Sidekiq: SIGTSTP)
    CELERY_CONTROL = "celery-control"  # `celery control cancel_consumer` per queue and node
    NONE = "none"  # no per-worker mechanism: reported as unsupported, never faked


class Ready(Enum):
    """How a started worker tells it is ready (deploytool.commands.ready waits for it after a restart)."""

    NOTIFY = "notify"  # Type=notify: `systemctl start` returned after the worker's own READY=1
    PROBE = "probe"  # the system's records say so: a readiness probe (deploytool.jobs.systems)
    STABLE = "stable"  # nothing to ask: the unit stays active, unrestarted, for `ready_after` seconds


class RedisKeys(Enum):
    """How a kind names its keys in Redis: what decides whether two apps may share one Redis DB."""

    PREFIXED = "prefixed"  # takes a key prefix (Celery/kombu global_keyprefix, Dramatiq's namespace)
    UNPREFIXED = "unprefixed"  # fixed key names (Sidekiq 7 dropped redis-namespace; RQ's rq:*)
    NONE = "none"  # keeps no keys deploytool knows of


@dataclass(frozen=True)
class Queue:
    name: str
    weight: int | None = None


QueueFlags = Callable[[Sequence[Queue]], list[str]]


def _sidekiq_queues(queues: Sequence[Queue]) -> list[str]:
    flags: list[str] = []
    for q in queues:
        flags += ["-q", q.name if q.weight is None else f"{q.name},{q.weight}"]
    return flags


def _celery_queues(queues: Sequence[Queue]) -> list[str]:
    return ["-Q", ",".join(q.name for q in queues)] if queues else []


def _positional_queues(queues: Sequence[Queue]) -> list[str]:
    # RQ takes queue names as arguments, in strict priority order.
    return [q.name for q in queues]


def _dramatiq_queues(queues: Sequence[Queue]) -> list[str]:
    return ["-Q", *(q.name for q in queues)] if queues else []


def _no_queues(queues: Sequence[Queue]) -> list[str]:
    return []


@dataclass(frozen=True)
class Kind:
    """One worker system. Defaults describe the common case (SIGTERM, KillMode=mixed, Type=exec, no
    quiet, no threads, no queues); each row of KINDS states only how its kind differs."""

    name: str
    # The worker program; an inventory's `command` replaces it (e.g. `bundle exec sidekiq -r ./app.rb`).
    program: tuple[str, ...]
    # Arguments placed right after the program (Celery's `worker` subcommand).
    subcommand: tuple[str, ...] = ()
    # Flag taking the number of threads per process; None: the kind has no threads setting.
    threads_flag: str | None = None
    queue_flags: QueueFlags = _no_queues
    supports_queues: bool = False
    supports_weights: bool = False
    # Flag taking a config file (an inventory's `config:`); flags for threads and queues override it.
    config_flag: str | None = None
    # Flag taking the worker's own shutdown grace, and the unit it is given in (1 = seconds).
    timeout_flag: str | None = None
    timeout_scale: int = 1
    # Extra per-instance arguments. Placeholders: {app}, {group}, {host} (the inventory host name) and
    # {instance} (systemd's %i, left unescaped by the renderer).
    instance_args: tuple[str, ...] = ()
    quiet: Quiet = Quiet.NONE
    quiet_signal: str | None = None
    stop_signal: str = "SIGTERM"
    # mixed: SIGTERM reaches only the main process, which drains its own children.
    kill_mode: str = "mixed"
    unit_type: str = "exec"
    watchdog_sec: int | None = None
    default_timeout: int = 30
    # systemd must wait longer than the worker's own grace, or it SIGKILLs running jobs.
    stop_margin: int = 5
    # The environment variable the kind reads its redis URL from, besides REDIS_URL (RQ: RQ_REDIS_URL,
    # the envvar of its --url). Through the environment file, a password in the URL stays out of
    # the world-readable unit and out of the worker's argv.
    redis_env: str | None = None
    # `command` must be given: the kind has no usable default program.
    requires_command: bool = False
    # A program (in deploytool/requeue/) run on a host after its workers stopped, putting back jobs
    # they took but never finished; for kinds whose own shutdown can drop a job (RQ 1.x).
    requeue: str | None = None
    redis_keys: RedisKeys = RedisKeys.NONE
    # The queue a worker started without queue flags works.
    default_queue: str = "default"
    ready: Ready = Ready.PROBE
    # Seconds a started unit must stay active with the same main process before it counts as ready
    # (an inventory's `ready_after:` replaces it); for kinds that cannot tell more, a crash at start.
    ready_after: int = 0

    def timeout_stop_sec(self, timeout: int) -> int:
        return timeout + self.stop_margin

    @property
    def can_quiet(self) -> bool:
        return self.quiet is not Quiet.NONE


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            name="sidekiq",
            program=("sidekiq",),
            threads_flag="-c",
            config_flag="-C",
            queue_flags=_sidekiq_queues,
            supports_queues=True,
            supports_weights=True,
            timeout_flag="-t",
            instance_args=("-g", "{app}-{group}-{instance}"),
            quiet=Quiet.SIGNAL,
            quiet_signal="SIGTSTP",
            kill_mode="control-group",
            unit_type="notify",
            ready=Ready.NOTIFY,
            watchdog_sec=10,
            default_timeout=25,
            redis_keys=RedisKeys.UNPREFIXED,
        ),
        Kind(
            name="celery",
            program=("celery",),
            subcommand=("worker",),
            threads_flag="--concurrency",
            queue_flags=_celery_queues,
            supports_queues=True,
            # A node name known before start, so quiet can address it with `control -d`.
            instance_args=("-n", "{app}-{group}-{instance}@{host}"),
            quiet=Quiet.CELERY_CONTROL,
            default_timeout=60,
            redis_keys=RedisKeys.PREFIXED,
            default_queue="celery",
        ),
        Kind(
            name="rq",
            program=("rq",),
            subcommand=("worker",),
            queue_flags=_positional_queues,
            supports_queues=True,
            # No fixed --name: after an unclean exit RQ refuses to start a worker whose name is still
            # registered, and systemd's restarts would all fail until the registration expires.
            instance_args=(),
            redis_env="RQ_REDIS_URL",
            requeue="rq.py",
            redis_keys=RedisKeys.UNPREFIXED,
        ),
        Kind(
            name="dramatiq",
            program=("dramatiq",),
            threads_flag="--threads",
            queue_flags=_dramatiq_queues,
            supports_queues=True,
            timeout_flag="--worker-shutdown-timeout",
            timeout_scale=1000,  # milliseconds
            instance_args=("--processes", "1"),
            default_timeout=600,
            requires_command=True,
            redis_keys=RedisKeys.PREFIXED,
        ),
        Kind(
            name="sneakers",
            program=("sneakers", "work"),
            requires_command=True,
            ready=Ready.STABLE,
            ready_after=5,
        ),
        Kind(
            name="command",
            program=(),
            kill_mode="control-group",
            requires_command=True,
            ready=Ready.STABLE,
            ready_after=5,
        ),
    )
}
