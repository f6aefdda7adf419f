"""Run one piece of work per host: in parallel with a bound, in rolling batches, stopping the
remaining batches once more than `max_fail` hosts failed."""

from __future__ import annotations

import math
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


def run(
    items: Sequence[T],
    work: Callable[[T], bool],
    skipped: Callable[[T], None],
    batch: str | None = None,
    default_batch: int = 0,
    parallel: int = 0,
    max_fail: int = 0,
) -> None:
    """`work` returns False when its host failed; hosts of batches not started get `skipped`."""
    size = batch_size(batch, len(items), default_batch)
    failed = 0
    for i, group in enumerate(batches(items, size)):
        if failed > max_fail:
            for rest in batches(items, size)[i:]:
                for item in rest:
                    skipped(item)
            return
        workers = max(1, min(parallel or len(group), len(group)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            failed += sum(1 for ok in pool.map(work, group) if not ok)
