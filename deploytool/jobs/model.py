"""What a worker system reports about its queues and its workers, as plain frozen objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueCounts:
    """One queue as its system sees it."""

    # None wherever the system keeps no such record (a message broker cannot be peeked at for the age
    # of its oldest message without taking it; Celery keeps no dead jobs).
    name: str
    queued: int  # waiting to be taken
    latency: float | None  # seconds the oldest waiting job has waited (0 when none waits)
    running: int | None  # taken by a worker, not finished
    scheduled: int | None  # to run later (Sidekiq's schedule set, RQ's scheduled registry, Dramatiq's delay
    # queue, Celery tasks with an eta held by workers)
    retrying: int | None  # failed, to be retried (Sidekiq's retry set)
    dead: int | None  # failed for good: Sidekiq's dead set, RQ's failed registry, Dramatiq's dead-letter queue
    deferred: int | None = None  # waiting on other jobs (RQ)
    reserved: int | None = None  # prefetched by a worker, not started (Celery)
    consumers: int | None = None  # the broker's own count of the queue's consumers (RabbitMQ)
    # Retrying and dead jobs whose last failure is at most RECENT seconds old (None: the system keeps no
    # time of failure: Dramatiq on RabbitMQ, Celery): a queue's failure rate from one reading.
    failed_recently: int | None = None


RECENT = 60  # seconds: the window of `failed_recently`, as the probes (deploytool/jobs/probes/) count it


@dataclass(frozen=True)
class SeenWorker:
    """A worker process as its system records it (Sidekiq's process hash, RQ's worker hash)."""

    name: str
    hostname: str
    pid: int | None
    tag: str  # Sidekiq's -g tag (deploytool passes app-group-N); empty for systems without one
    queues: tuple[str, ...]
    concurrency: int
    busy: int
    quiet: bool
    unit: str | None  # its systemd unit, known when read on its own host (from /proc/PID/cgroup)


@dataclass(frozen=True)
class Reading:
    """One probe's output: a system's queues and workers, read through one host."""

    system: str
    host: str  # the inventory host the probe ran on
    hostname: str  # that machine's own hostname, as workers record theirs
    queues: tuple[QueueCounts, ...]
    other_queues: tuple[tuple[str, int], ...]  # queues the system knows that were not asked for, with jobs
    workers: tuple[SeenWorker, ...]
    workers_known: bool = True  # False: the system does not record its workers where the probe can see them


@dataclass(frozen=True)
class QueueStatus:
    """One row of `jobs.status`: an app's queue, its counts and its workers seen versus expected."""

    app: str
    system: str
    host: str
    counts: QueueCounts
    # Concurrency of the live workers on this queue as the system sees it (threads, or processes for
    # systems whose broker sees one consumer per process), and as the inventory expects it, summed over
    # the hosts (processes x threads, or processes).
    workers: int | None  # None: the system does not tell
    workers_expected: int
    quiet: int  # processes on this queue that are quiet (take no new jobs)

    @property
    def key(self) -> str:
        return f"{self.app}/{self.system}/{self.counts.name}"
