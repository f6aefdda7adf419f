"""Batches and the max-fail rule of rolling runs (pure: threads, no hosts)."""

from __future__ import annotations

import _thread
import threading

import pytest

from deploytool.engine.rolling import CANCELLED, batch_size, batches, run
from deploytool.errors import InputError


@pytest.mark.parametrize(
    ("batch", "total", "default", "size"),
    [(None, 10, 0, 10), (None, 10, 1, 1), ("3", 10, 1, 3), ("25%", 10, 1, 2), ("25%", 2, 1, 1),
     ("100%", 32, 1, 32), ("50", 4, 1, 50)],
)
def test_batch_size(batch: str | None, total: int, default: int, size: int) -> None:
    assert batch_size(batch, total, default) == size


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "0%", "150%", "%"])
def test_bad_batch_is_input_error(bad: str) -> None:
    with pytest.raises(InputError, match=f"batch {bad}"):
        batch_size(bad, 10, 1)


def test_batches_keep_order() -> None:
    assert batches(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]


def test_rolling_run_stops_after_max_fail_and_reports_the_rest_skipped() -> None:
    started: list[str] = []
    skipped: list[str] = []
    lock = threading.Lock()

    def work(h: str) -> bool:
        with lock:
            started.append(h)
        return not h.startswith("bad")

    run(["bad-1", "ok-1", "ok-2", "ok-3", "ok-4"], work, lambda h, why: skipped.append((h, why)), batch="2",
        max_fail=0)
    assert sorted(started) == ["bad-1", "ok-1"]
    assert skipped == [(h, "not started: too many hosts failed") for h in ("ok-2", "ok-3", "ok-4")]


def test_rolling_run_tolerates_up_to_max_fail() -> None:
    skipped: list[str] = []
    run(["bad-1", "bad-2", "ok-1"], lambda h: not h.startswith("bad"), lambda h, why: skipped.append(h),
        batch="1", max_fail=2)
    assert skipped == []


def test_parallel_bound_within_a_batch() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(2, timeout=5)

    def work(h: str) -> bool:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        gate.wait()  # two at a time reach here together; a third would time the barrier out
        with lock:
            active -= 1
        return True

    run([f"h{i}" for i in range(6)], work, lambda h, why: None, parallel=2)
    assert peak == 2


@pytest.mark.usefixtures("not_cancelled")
def test_interrupt_finishes_started_hosts_and_skips_the_rest() -> None:
    # Ctrl-C (or SIGTERM, which tasks turn into the same) while h0 and h1 run: both finish, none after.
    finished: list[str] = []
    skipped: list[tuple[str, str]] = []
    both_started = threading.Barrier(2, timeout=5)

    def work(h: str) -> bool:
        both_started.wait()
        if h == "h0":
            # Ctrl-C as the main thread takes it, inside run(): once it wakes (when h0 ends), whatever the
            # machine's load; h1 is still running then, and ends only once run() took it.
            _thread.interrupt_main()
        else:
            assert CANCELLED.wait(10), "the interruption was not taken"
        finished.append(h)
        return True

    run(["h0", "h1", "h2", "h3"], work, lambda h, why: skipped.append((h, why)), batch="2")
    assert sorted(finished) == ["h0", "h1"]
    assert skipped == [("h2", "not started: interrupted"), ("h3", "not started: interrupted")]
