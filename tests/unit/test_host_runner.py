"""The plan runner (deploytool.engine.host_runner) run here by bash and python3 as a host runs it, spoken to
through its protocol: the deploy lock it holds, and what it does when its controller goes away: before
the commit point it runs the armed recovery and frees the lock, after it it finishes the plan; either
way it records the run in deploy_to/.deploy.last."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from local_shell import LocalStream

from deploytool.engine import host_runner
from deploytool.engine.execute import PROGRAM
from deploytool.engine.lock import Holder
from deploytool.remote import sign

NONCE = "0123456789abcdef"


def holder(name: str) -> Holder:
    return Holder(name, f"ci-{name}", 4242, "abc123", "20260101000000", "2026-01-01T00:00:00+00:00", f"tok-{name}")


def start(plan: dict[str, Any], bound: float = 30.0) -> LocalStream:
    stream = LocalStream(host_runner.BOOT, None, None, NONCE)
    data = json.dumps({"nonce": NONCE, "bound": bound, "timeout": 30, **plan})
    stream.send(f"{len(PROGRAM.encode())}\n{PROGRAM}{len(data.encode())}\n{data}")
    return stream


def script(stage: str, command: str, arms: tuple[str, ...] = (), commits: bool = False,
           rolling: bool = False) -> dict[str, Any]:
    return {"type": "script", "text": sign(f"echo @@deploytool-stage {stage}\n{command}", NONCE), "first": stage,
            "arms": {stage: list(arms)}, "commits": commits, "rolling": rolling}


def lock(deploy_to: Path, who: Holder) -> dict[str, Any]:
    return {"type": "lock", "stage": "lock", "deploy_to": str(deploy_to), "record": who.json(), "token": who.token,
            "force": False}


def events(stream: LocalStream, until: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The runner's events up to the first carrying `until`."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.read_line(1.0)
        if line is None:
            assert not stream.ended(), (seen, stream.error_text())
            continue
        if line.startswith("@@deploytool-runner "):
            seen.append(json.loads(line.split(" ", 1)[1]))
            if until in seen[-1]:
                return seen
    raise AssertionError(f"no {until!r} within {timeout}s: {seen}")


def go(stream: LocalStream, index: int) -> None:
    stream.send(json.dumps({"go": index}) + "\n")


def test_lock_is_exclusive_names_its_holder_and_is_free_once_the_runner_ends(tmp_path: Path) -> None:
    ann, bob = holder("ann"), holder("bob")
    first = start({"actions": [lock(tmp_path, ann), script("code", "true"), {"type": "unlock", "stage": "unlock"}],
                   "recovery": []})
    events(first, "done")  # holds the lock, waits for its go
    assert Holder.parse((tmp_path / ".deploy.lock").read_text()) == ann
    second = start({"actions": [lock(tmp_path, bob)], "recovery": []})
    busy = events(second, "busy")[-1]
    assert Holder.parse(busy["busy"]) == ann
    assert events(second, "finished")[-1]["finished"] == "failed"
    go(first, 2)
    assert events(first, "finished")[-1]["finished"] == "ok"
    first.close()
    second.close()
    assert not (tmp_path / ".deploy.lock").exists()
    record = json.loads((tmp_path / ".deploy.last").read_text())
    assert record["state"] == "ok" and record["holder"]["token"] == "tok-ann", record


def test_controller_gone_before_the_commit_point_runs_the_armed_recovery_and_frees_the_lock(tmp_path: Path) -> None:
    plan = {"actions": [lock(tmp_path, holder("ann")),
                        script("switch", f"touch {tmp_path}/switched", arms=("switch back", "workers")),
                        script("restart", f"touch {tmp_path}/restarted", commits=True),
                        {"type": "unlock", "stage": "unlock"}],
            "recovery": [{"name": "switch back", "command": f"rm {tmp_path}/switched"},
                         {"name": "remove release", "command": f"touch {tmp_path}/never-armed"},
                         {"name": "workers", "command": f"touch {tmp_path}/workers-back"}]}
    stream = start(plan)
    events(stream, "done")  # the switch is done; the controller is killed before it says go
    assert stream.proc.stdin is not None
    stream.proc.stdin.close()  # its SSH session ends
    assert stream.wait(30) == 1
    assert not (tmp_path / "switched").exists() and (tmp_path / "workers-back").exists()
    assert not (tmp_path / "restarted").exists() and not (tmp_path / "never-armed").exists()
    assert not (tmp_path / ".deploy.lock").exists()
    record = json.loads((tmp_path / ".deploy.last").read_text())
    assert record["state"] == "abandoned" and record["stage"] == "switch", record
    assert "controller went away" in record["reason"], record
    assert record["did"] == "put itself back: switch back ok, workers ok", record


def test_silent_controller_counts_as_gone_after_the_bound(tmp_path: Path) -> None:
    plan = {"actions": [lock(tmp_path, holder("ann")), script("switch", "true", arms=("switch back",)),
                        script("restart", "true", commits=True)],
            "recovery": [{"name": "switch back", "command": f"touch {tmp_path}/switched-back"}]}
    stream = start(plan, bound=1.0)
    events(stream, "done")
    # No line at all from the controller (its link is down): no EOF, only silence.
    recovered = events(stream, "finished", timeout=30)
    assert {"recovered": "switch back", "rc": 0, "text": ""} in recovered
    assert (tmp_path / "switched-back").exists() and not (tmp_path / ".deploy.lock").exists()
    assert "no heartbeat" in json.loads((tmp_path / ".deploy.last").read_text())["reason"]
    stream.close()


def test_controller_gone_after_the_commit_point_lets_the_host_finish_the_plan(tmp_path: Path) -> None:
    plan = {"actions": [lock(tmp_path, holder("ann")),
                        script("restart", "true", arms=("workers",), commits=True),
                        script("cleanup", f"touch {tmp_path}/cleaned"), {"type": "unlock", "stage": "unlock"}],
            "recovery": [{"name": "workers", "command": f"touch {tmp_path}/recovered"}]}
    stream = start(plan)
    events(stream, "done")
    assert stream.proc.stdin is not None
    stream.proc.stdin.close()
    assert stream.wait(30) == 0
    assert (tmp_path / "cleaned").exists() and not (tmp_path / "recovered").exists()
    assert not (tmp_path / ".deploy.lock").exists()
    record = json.loads((tmp_path / ".deploy.last").read_text())
    assert record["state"] == "abandoned" and record["did"] == "finished the plan on its own", record


def test_a_host_waiting_at_the_gate_whose_controller_goes_away_puts_itself_back(tmp_path: Path) -> None:
    plan = {"actions": [script("switch", "true", arms=("switch back",)),
                        script("restart", f"touch {tmp_path}/restarted", rolling=True, commits=True)],
            "recovery": [{"name": "switch back", "command": f"touch {tmp_path}/switched-back"}]}
    stream = start(plan)
    events(stream, "done")
    go(stream, 1)
    assert events(stream, "wait")[-1] == {"wait": "gate", "at": 1}
    assert stream.proc.stdin is not None
    stream.proc.stdin.close()
    assert stream.wait(30) == 1
    assert (tmp_path / "switched-back").exists() and not (tmp_path / "restarted").exists()


def test_abort_starts_nothing_new_and_recovers(tmp_path: Path) -> None:
    plan = {"actions": [script("code", "true", arms=("remove release",)), script("switch", f"touch {tmp_path}/x")],
            "recovery": [{"name": "remove release", "command": f"touch {tmp_path}/removed"}]}
    stream = start(plan)
    events(stream, "done")
    stream.send(json.dumps({"abort": "interrupted"}) + "\n")
    failed = events(stream, "failed")[-1]
    assert failed["error"] == "interrupted"
    stream.send(json.dumps({"recover": 1, "recovery": plan["recovery"]}) + "\n")
    events(stream, "finished")
    stream.close()
    assert (tmp_path / "removed").exists() and not (tmp_path / "x").exists()


def test_markers_a_build_prints_are_defused(tmp_path: Path) -> None:
    stream = start({"actions": [script("build", "echo @@deploy''tool-release 20990101000000")], "recovery": []})
    lines = []
    while (line := stream.read_line(5.0)) is not None and "finished" not in line:
        lines.append(line)
        if "done" in line:
            go(stream, 1)
    stream.close()
    assert "(unsigned) @@deploytool-release 20990101000000" in lines, lines


def test_lock_directory_of_an_older_deploytool_is_respected(tmp_path: Path) -> None:
    (tmp_path / ".deploy.lock").mkdir()
    (tmp_path / ".deploy.lock" / "holder").write_text(holder("old").json() + "\n")
    stream = start({"actions": [lock(tmp_path, holder("ann"))], "recovery": []})
    busy = events(stream, "busy")[-1]
    stream.close()
    assert busy["legacy"] is True and Holder.parse(busy["busy"]) == holder("old")
    assert (tmp_path / ".deploy.lock").is_dir()
