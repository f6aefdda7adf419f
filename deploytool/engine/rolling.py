"""Run one piece of work per host: in parallel with a bound, in rolling batches, stopping the
remaining batches once more than `max_fail` hosts failed."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from deploytool.errors import InputError

T = TypeVar("T")


def batch_size(batch: str | None, total: int, default: int) -> int:
    """`N` hosts or `P%` of them per batch (at least one)."""
    if not batch:
        return max(1, min(default, total)) if default else max(total, 1)
    try:
        if batch.endswith("%"):
            pct = float(batch[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.floor(total * pct / 100))
        n = int(batch)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise InputError(f"batch {batch}: expected a number of hosts >= 1 or a percentage like 25%") from None


def batches(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# Set when the user interrupts (Ctrl-C, or SIGTERM from a cancelled CI job): hosts already started
# finish the action they are in, start nothing new and are put back (deploytool.engine.execute).
CANCELLED = threading.Event()

TOO_MANY_FAILED = "not started: too many hosts failed"
INTERRUPTED = "not started: interrupted"


def run(
    items: Sequence[T],
    work: Callable[[T], bool],
    skipped: Callable[[T, str], None],
    batch: str | None = None,
    default_batch: int = 0,
    parallel: int = 0,
    max_fail: int = 0,
) -> None:
    """`work` returns False when its host failed; hosts never started get `skipped` with the reason.

    Interrupted (Ctrl-C, or SIGTERM from a cancelled CI job), hosts already started stop at their next
    step and are put back (never abandoned half-way with a lock held or workers quiet); the others are
    not started."""
    size = batch_size(batch, len(items), default_batch)
    groups = batches(list(enumerate(items)), size)
    started: set[int] = set()
    lock = threading.Lock()
    failed = 0

    def start(pair: tuple[int, T]) -> bool:
        with lock:
            started.add(pair[0])
        return work(pair[1])

    def skip_rest(i: int, reason: str) -> None:
        for index, item in (p for g in groups[i:] for p in g):
            if index not in started:
                skipped(item, reason)

    for i, group in enumerate(groups):
        if failed > max_fail:
            skip_rest(i, TOO_MANY_FAILED)
            return
        pool = ThreadPoolExecutor(max_workers=max(1, min(parallel or len(group), len(group))))
        try:
            failed += sum(1 for ok in pool.map(start, group) if not ok)
        except KeyboardInterrupt:
            CANCELLED.set()
            pool.shutdown(wait=True, cancel_futures=True)
            skip_rest(i, INTERRUPTED)
            return
        finally:
            pool.shutdown(wait=True)
