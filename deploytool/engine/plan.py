"""A host's plan: the actions an operation takes on one host, in order, as plain data, and the recovery
steps that put the host back if any of them fails. Built by pure functions, printed by --dry-run
(deploytool.engine.runner), run by the one executor (deploytool.engine.execute) through the one runner
(deploytool.engine.runner.run).

Where each operation's plan is built:

    deploy                      deploytool.operations.deploy.Deploy.build_plan
    rollback                    deploytool.operations.releases.rollback_plan
    workers.install / uninstall deploytool.operations.workers.install_plan / uninstall_plan
    workers.start / stop        deploytool.operations.workers.start_plan / stop_plan
    workers.quiet / restart     deploytool.operations.workers.quiet_plan / restart_plan
    workers.enable / disable    deploytool.operations.workers.enable_plan / disable_plan
    config.upload               deploytool.operations.shared_files.upload_plan (its dry run: compare_plan)
    check (read only)           deploytool.operations.check.check_plan

Their commands come from pure builders in deploytool.commands (one module per subject), argv joined into
shell text in one place (deploytool.remote.join / script).

A plan is a list that is easy to extend: to hook a step in, add a Step to the Script where it belongs
(its `stage` names it in reports) and, if it changes something that must be undone on failure, name a
recovery step it arms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploytool.engine.lock import Holder
from deploytool.inventory import App

# What a host reported while running a plan: facts from marker lines (`previous`, `release`, ...) and
# `output:STAGE`, the other stdout lines of the round trip that began with STAGE.
Facts = dict[str, str]


@dataclass(frozen=True)
class Step:
    """One command (shell text from a builder) in a stage; once its stage has started, the recovery
    steps it `arms` run if the plan fails."""

    stage: str
    command: str
    arms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Script:
    """Steps sent to the host in one round trip; each stage announces itself, so each is timed and
    reported on its own, and each has its own timeout.

    `rolling`: waits for the rolling gate first (hosts restarting their workers together are bounded).
    `commits`: once this round trip succeeded, the new state is the good one: nothing armed so far is
    undone by a later failure (a failed cleanup does not roll a working release back).
    `held`: starts only once the controller's hold lets it (deploytool.engine.execute.Hold): a canary's
    later waves wait here, before their switch, until the batch before passed its soak."""

    steps: tuple[Step, ...]
    rolling: bool = False
    commits: bool = False
    held: bool = False


@dataclass(frozen=True)
class Upload:
    stage: str
    local: Path | None  # None in a dry run (nothing packed): `what` says what would be sent
    remote: str
    arms: tuple[str, ...] = ()
    what: str = ""


@dataclass(frozen=True)
class Lock:
    """Take the app's deploy lock on the host (deploytool.engine.lock); released by Unlock or after recovery."""

    app: App
    holder: Holder
    force: bool = False
    stage: str = "lock"


@dataclass(frozen=True)
class Unlock:
    stage: str = "unlock"


Action = Script | Upload | Lock | Unlock


@dataclass(frozen=True)
class Recovery:
    """A step that puts something back; all armed ones run, in the plan's order, each on its own: one
    failing never stops the next."""

    name: str
    command: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    recovery: tuple[Recovery, ...] = ()


def describe(plan: Plan, lock_text: str = "take the deploy lock (flock, held while the deploy runs)",
             ) -> list[tuple[str, list[str]]]:
    """Every stage with the commands it sends, in order: what --dry-run prints."""
    stages: list[tuple[str, list[str]]] = []

    def add(stage: str, command: str) -> None:
        if stages and stages[-1][0] == stage:
            stages[-1][1].append(command)
        else:
            stages.append((stage, [command]))

    for action in plan.actions:
        if isinstance(action, Script):
            for step in action.steps:
                add(step.stage, step.command)
        elif isinstance(action, Upload):
            add(action.stage, f"upload {action.what or action.local} -> {action.remote}")
        elif isinstance(action, Lock):
            add(action.stage, lock_text)
        else:
            add(action.stage, "release the deploy lock")
    return stages


def stages(steps: Sequence[Step]) -> list[str]:
    """The stage names of steps, in order, each once."""
    names: list[str] = []
    for s in steps:
        if not names or names[-1] != s.stage:
            names.append(s.stage)
    return names
