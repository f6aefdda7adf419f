"""`fab workers.quiet`: its policy for kinds without a quiet mechanism (RQ, Dramatiq, Sneakers, command),
and Celery's retried control command, run in a real shell."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploytool.commands.quiet import until_replied
from deploytool.kinds import KINDS
from deploytool.tasks.workers import quiet_shortfall


def test_kinds_that_can_be_quieted() -> None:
    assert sorted(k.name for k in KINDS.values() if k.can_quiet) == ["celery", "sidekiq"]


def test_every_kind_quieted_is_fine() -> None:
    assert quiet_shortfall(["celery", "sidekiq"], [], strict=True) is None


def test_a_mixed_app_reports_the_rest_without_failing() -> None:
    assert quiet_shortfall(["sidekiq"], ["rq"], strict=False) is None


def test_strict_fails_a_mixed_app_naming_the_kinds() -> None:
    why = quiet_shortfall(["sidekiq"], ["dramatiq", "rq"], strict=True)
    assert why == ("quiet: not supported by dramatiq, rq (no per-worker quiet mechanism); "
                   "the other kinds were quieted")


def test_nothing_quietable_is_no_failure_unless_strict() -> None:
    # An RQ-only app: RQ has no quiet, nothing failed (a note says so).
    assert quiet_shortfall([], ["rq"], strict=False) is None
    why = quiet_shortfall([], ["rq"], strict=True)
    assert why is not None and why.endswith("nothing was quieted")


def test_until_replied_tries_again_and_fails_if_it_never_succeeds(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    succeeds_third = f"[ $(echo x >> {counter}; wc -l < {counter}) -ge 3 ]"
    ok = subprocess.run(["sh", "-c", until_replied(succeeds_third, 5)], check=False)
    assert ok.returncode == 0 and counter.read_text().count("x") == 3
    never = subprocess.run(["sh", "-c", until_replied("false", 2) + "; echo status $?"], capture_output=True,
                           text=True, check=False)
    assert never.stdout.strip() == "status 1"
