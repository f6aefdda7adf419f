"""The executor's policy with a local bash standing in for the host's shell: recovery runs every armed
step even when one fails, each reported; a committed plan is not undone; an interruption starts
nothing new."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from local_shell import LocalShell, LocalStream

from deploytool.engine.execute import Execution, Hold
from deploytool.engine.plan import Plan, Recovery, Script, Step
from deploytool.engine.rolling import CANCELLED
from deploytool.report import HostReport, Reporter

pytestmark = pytest.mark.usefixtures("not_cancelled")


def execute(plan: Plan) -> tuple[bool, HostReport, LocalShell]:
    shell = LocalShell()
    report = HostReport("h", "app")
    ok = Execution(shell, "h", report, Reporter(out=io.StringIO())).run(lambda facts: plan)
    return ok, report, shell


def test_every_armed_recovery_step_runs_even_after_one_fails(tmp_path: Path) -> None:
    done = tmp_path / "workers-back"
    plan = Plan(
        (Script((Step("switch", "true", arms=("switch back", "workers")),
                 Step("restart", "echo boom >&2; exit 7", arms=("workers",)))),),
        (Recovery("switch back", "echo cannot >&2; exit 3"), Recovery("units", f"touch {tmp_path}/never"),
         Recovery("workers", f"touch {done}")),
    )
    ok, report, _ = execute(plan)
    assert not ok and report.status == "failed"
    assert report.error is not None and report.error.startswith("h: restart: exit 7: boom")
    assert "recovery failed: switch back: exit 3: cannot" in report.error
    assert done.exists(), "the workers step ran although the step before it failed"
    assert not (tmp_path / "never").exists(), "units were never armed"
    results = {s.name: s.status for s in report.stages if s.name.startswith("recover:")}
    assert results == {"recover:switch back": "failed", "recover:workers": "ok"}
    assert [s.name for s in report.stages if not s.name.startswith("recover:")] == ["switch", "restart"]


def test_only_stages_that_started_arm_their_recovery(tmp_path: Path) -> None:
    plan = Plan(
        (Script((Step("code", "exit 1", arms=("remove release",)),)),
         Script((Step("switch", "true", arms=("switch back",)),))),
        (Recovery("switch back", f"touch {tmp_path}/switched-back"),
         Recovery("remove release", f"touch {tmp_path}/removed")),
    )
    ok, _, shell = execute(plan)
    assert not ok and len(shell.scripts) == 1  # one plan sent; the host ran its recovery itself
    assert (tmp_path / "removed").exists() and not (tmp_path / "switched-back").exists()


def test_a_committed_plan_is_not_undone_by_a_later_failure(tmp_path: Path) -> None:
    plan = Plan(
        (Script((Step("restart", "true", arms=("workers",)),), commits=True),
         Script((Step("cleanup", "exit 2"),))),
        (Recovery("workers", f"touch {tmp_path}/recovered"),),
    )
    ok, report, shell = execute(plan)
    assert not ok and report.error is not None and "cleanup: exit 2" in report.error
    assert len(shell.scripts) == 1 and not (tmp_path / "recovered").exists()


def test_interrupted_run_starts_nothing_new() -> None:
    CANCELLED.set()
    ok, report, shell = execute(Plan((Script((Step("check", "true"),)),)))
    assert not ok and shell.scripts == [] and report.error is not None and "interrupted" in report.error


def test_facts_from_markers_reach_the_next_plan() -> None:
    seen: list[dict[str, str]] = []

    def build(facts: dict[str, str]) -> Plan:
        seen.append(dict(facts))
        first = Script((Step("check", "echo @@deploytool-release 20260101000009; echo listing"),))
        return Plan((first, Script((Step("code", "true"),))))

    report = HostReport("h", "app")
    assert Execution(LocalShell(), "h", report, Reporter(out=io.StringIO())).run(build)
    assert seen[1]["release"] == "20260101000009" and seen[1]["output:check"] == "listing"


def test_interrupted_as_a_script_ends_the_host_starts_nothing_new(tmp_path: Path) -> None:
    """Ctrl-C lands between the host's last line of a script and the controller's go: the host gets the
    abort, never the go, and puts itself back."""
    shell = LocalShell()
    real_start = shell.start

    def start(command: str, stage: str) -> LocalStream:
        stream = real_start(command, stage)
        read = stream.read_line

        def read_line(timeout: float) -> str | None:
            line = read(timeout)
            if line is not None and '"done": 0' in line:
                CANCELLED.set()  # after the loop's own check, before it answers the host
            return line

        stream.read_line = read_line  # type: ignore[method-assign]
        return stream

    shell.start = start  # type: ignore[method-assign]
    plan = Plan((Script((Step("code", "true", arms=("remove release",)),)),
                 Script((Step("switch", f"touch {tmp_path}/switched"),))),
                (Recovery("remove release", f"touch {tmp_path}/removed"),))
    report = HostReport("h", "app")
    assert not Execution(shell, "h", report, Reporter(out=io.StringIO())).run(lambda facts: plan)
    assert report.error is not None and "interrupted" in report.error, report.error
    assert not (tmp_path / "switched").exists() and (tmp_path / "removed").exists()
    assert not any('"go": 1' in text for text in shell.streams[0].sent), "a go was sent after the interruption"


def held_plan(tmp_path: Path) -> Plan:
    """Stage a release, then a held switch: a canary's later wave."""
    return Plan(
        (Script((Step("code", f"touch {tmp_path}/staged", arms=("remove release",)),)),
         Script((Step("switch", f"touch {tmp_path}/switched", arms=("switch back",)),), commits=True, held=True)),
        (Recovery("switch back", f"touch {tmp_path}/switched-back"),
         Recovery("remove release", f"rm {tmp_path}/staged; touch {tmp_path}/removed")),
    )


def held_run(tmp_path: Path, hold: Hold) -> tuple[threading.Thread, HostReport, list[bool]]:
    """held_plan run in a thread of its own, returned once the host staged and waits at its hold."""
    report = HostReport("h", "app")
    result: list[bool] = []
    ex = Execution(LocalShell(), "h", report, Reporter(out=io.StringIO()), hold=hold)
    thread = threading.Thread(target=lambda: result.append(ex.run(lambda facts: held_plan(tmp_path))))
    thread.start()
    wait_for(lambda: (tmp_path / "staged").exists())
    return thread, report, result


def test_a_refused_hold_puts_the_host_back_without_starting_the_held_script(tmp_path: Path) -> None:
    hold = Hold("prod-a passed the soak")
    thread, report, result = held_run(tmp_path, hold)
    thread.join(0.5)
    assert thread.is_alive(), "the host went on past its hold"
    hold.refuse("canary gate failures tripped on prod-a")
    thread.join(30)
    assert result == [False] and report.error == "h: canary gate failures tripped on prod-a"
    assert (tmp_path / "removed").exists() and not (tmp_path / "staged").exists()
    assert not (tmp_path / "switched").exists() and not (tmp_path / "switched-back").exists()
    assert [s.name for s in report.stages] == ["code", "recover:remove release"]


def test_a_released_hold_lets_the_host_go_on(tmp_path: Path) -> None:
    hold = Hold("the failure rate before the deploy is read")
    hold.release()
    hold.refuse("too late: a decided hold stays decided")
    report = HostReport("h", "app")
    assert Execution(LocalShell(), "h", report, Reporter(out=io.StringIO()), hold=hold).run(
        lambda facts: held_plan(tmp_path))
    assert (tmp_path / "switched").exists() and not (tmp_path / "removed").exists()


def test_an_interruption_while_held_puts_the_host_back(tmp_path: Path) -> None:
    thread, _, result = held_run(tmp_path, Hold("prod-a passed the soak"))
    CANCELLED.set()
    thread.join(30)
    assert result == [False] and (tmp_path / "removed").exists() and not (tmp_path / "switched").exists()


def wait_for(ready: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
