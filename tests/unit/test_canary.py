"""The canary's gates on readings (pure), and its options checked before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploytool import canary
from deploytool.canary import Gates, Reading, rates, trips
from deploytool.inventory import load_inventory
from deploytool.tasks.options import check_options

SANDBOX = Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml"
U = "prod-a sample-rq@1.service"
Q = "sample/rq/default"


def reading(at: float, state: str = "active", restarts: int = 0, seen: int = 2, failed: int = 0) -> Reading:
    return Reading(at, {U: (state, restarts)}, {Q: (seen, 2)}, {Q: failed})


START = reading(100.0)


def gate_names(now: Reading, previous: Reading = START, failing: dict[str, float] | None = None,
               max_failed_increase: int = 0) -> list[str]:
    return [t.gate for t in trips(START, previous, now, Gates(30, max_failed_increase), failing)]


def test_a_healthy_reading_trips_nothing() -> None:
    assert gate_names(reading(105.0)) == []


@pytest.mark.parametrize("now", [reading(105.0, restarts=1), reading(105.0, state="activating")])
def test_a_restart_or_a_unit_leaving_active_is_a_crash_loop(now: Reading) -> None:
    [trip] = trips(START, START, now, Gates(30))
    assert trip.gate == canary.CRASH_LOOP
    assert trip.readings[0].startswith(f"{U}: ")


def test_workers_lost_only_when_two_readings_in_a_row_see_fewer() -> None:
    once = reading(105.0, seen=1)
    assert gate_names(once) == []  # one missed reply is not a lost worker
    assert gate_names(reading(110.0, seen=1), previous=once) == [canary.WORKERS_LOST]


def test_new_failed_jobs_above_the_allowed_increase_trip_the_failures_gate() -> None:
    assert gate_names(reading(110.0, failed=1)) == [canary.FAILURES]
    assert gate_names(reading(110.0, failed=3), max_failed_increase=3) == []
    [trip] = trips(START, START, reading(110.0, failed=4), Gates(30, 3))
    assert trip.readings == [f"{Q}: 4 new retrying/dead jobs during the soak, 3 allowed (0 -> 4)"]


def test_a_queue_failing_before_the_deploy_is_measured_against_its_own_rate() -> None:
    failing = rates(reading(0.0, failed=10), reading(5.0, failed=15))  # 1 a second before the deploy
    assert failing == {Q: 1.0}
    assert gate_names(reading(110.0, failed=10), failing=failing) == []  # 10 s at its old rate
    assert gate_names(reading(110.0, failed=16), failing=failing) == [canary.FAILURES]


def test_dry_run_describes_every_gate_and_its_threshold() -> None:
    app = load_inventory(SANDBOX).apps["sample"].model_copy(update={"health": ("bin/smoke",)})
    lines = Gates(30, 2).describe([app])
    assert lines[0].startswith("soak 30 s")
    assert [ln.split(":")[0] for ln in lines[1:]] == [canary.CRASH_LOOP, canary.WORKERS_LOST, canary.FAILURES,
                                                      canary.HEALTH]
    assert "more than 2 new" in lines[3] and "bin/smoke" in lines[4]


@pytest.mark.parametrize(("option", "value"), [("canary", "0"), ("canary", "150%"), ("canary", "x"),
                                               ("soak", "-1"), ("soak", "abc"), ("max_failed_increase", "-2")])
def test_bad_canary_options_are_bad_input(option: str, value: str) -> None:
    from deploytool.errors import InputError

    with pytest.raises(InputError, match="--" + option.replace("_", "-")):
        check_options({option: value})


def test_an_apps_soak_and_health_hooks_come_from_the_inventory() -> None:
    app = load_inventory(SANDBOX).apps["sample"]
    assert app.soak == 0 and app.health == ()


@pytest.mark.parametrize(("details", "rollback", "said"), [
    ({"rollback": "ok", "rolled_back_to": "20260101000000"}, True, "; rolled back to release 20260101000000"),
    ({"rollback": "failed: prod-a: restart: exit 1"}, True, "; rollback failed: prod-a: restart: exit 1"),
    ({}, True, "; nothing to roll back to (its first release)"),
    ({}, False, "; left as it is (--no-rollback)"),
])
def test_a_tripped_host_says_what_became_of_it(details: dict[str, str], rollback: bool, said: str) -> None:
    from deploytool.operations.waves import undone_text
    from deploytool.report import HostReport

    assert undone_text(HostReport("prod-a", "sample", details=details), rollback) == said


@pytest.mark.parametrize(("canary", "batch", "waves"), [
    ("1", None, [["a"], ["b", "c", "d"]]),
    ("50%", None, [["a", "b"], ["c", "d"]]),
    ("4", None, [["a", "b", "c", "d"]]),  # every host a canary: one wave
    (None, "2", [["a", "b"], ["c", "d"]]),  # --soak alone: each batch
    (None, None, [["a", "b", "c", "d"]]),
])
def test_waves_are_the_canary_hosts_then_the_rest_or_the_batches(canary: str | None, batch: str | None,
                                                                  waves: list[list[str]]) -> None:
    from deploytool.operations.waves import Watch, waves_of

    assert waves_of(["a", "b", "c", "d"], Watch(canary, 30, 0, True), batch) == waves


def test_a_later_wave_host_counts_as_not_switched_only_if_it_never_switched_and_its_recovery_held() -> None:
    from deploytool.operations.waves import unswitched
    from deploytool.report import HostReport, StageReport

    def host(*stages: tuple[str, str]) -> HostReport:
        return HostReport("prod-b", "sample", status="failed", stages=[StageReport(n, status=s) for n, s in stages])

    assert unswitched(host(("code", "ok"), ("shared", "ok"), ("recover:remove release", "ok")))
    assert not unswitched(host(("code", "ok"), ("recover:remove release", "failed")))
    assert not unswitched(host(("shared", "ok"), ("switch", "ok"), ("recover:switch back", "ok")))
