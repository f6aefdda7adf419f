"""The one executor: runs a host's plan (deploytool.plan) with one policy for every operation.

- Timeouts: each stage may take the plan's stage timeout; a host answering no keepalive is lost within
  the liveness bound (deploytool.remote).
- Recovery: if an action fails (or the run is interrupted), every recovery step armed by a stage that
  started runs, each on its own, in the plan's order, each result reported; a failing one never stops
  the next. The lock, if held, is released last, whatever happened.
- Interruption: Ctrl-C or SIGTERM (rolling.CANCELLED) starts nothing new; the host is put back.
- Reporting: a progress line and a report entry per stage, per recovery step."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from typing import Protocol

from deploytool import lock
from deploytool.commands import release as rel
from deploytool.errors import HostError
from deploytool.plan import Action, Facts, Lock, Plan, Recovery, Script, Unlock, Upload
from deploytool.remote import Result, Session, last_lines, script
from deploytool.report import HostReport, Reporter, StageReport
from deploytool.rolling import CANCELLED

PID = "@@deploytool-pid"  # the remote shell's pid (= its process group)
RECOVERED = "@@deploytool-recovered"  # a recovery step's result: INDEX EXIT last output


class Runner(Protocol):
    """What the executor needs from a host session (deploytool.remote.Session)."""

    def run(self, command: str, stage: str, check: bool = ..., timeout: float | None = ...,
            on_line: Callable[[str], None] | None = ...) -> Result: ...

    def put(self, local: Path, remote: str, stage: str, timeout: float | None = ...) -> None: ...

    def real(self) -> Session:
        """The SSH session itself (the lock holder needs a channel of its own)."""
        ...


def recovery_script(steps: list[Recovery]) -> str:
    """Every step in its own subshell, its exit code and last output lines printed; none stops another."""
    lines = []
    for i, r in enumerate(steps):
        lines.append(
            f"out=$( ( {r.command}\n) </dev/null 2>&1 ); rc=$?; "
            f"printf '%s %s %s %s\\n' {RECOVERED} {i} \"$rc\" "
            f"\"$(printf '%s' \"$out\" | tail -n 3 | tr '\\n' ' ')\""
        )
    return "\n".join(lines)


def parse_recovered(stdout: str) -> dict[int, tuple[int, str]]:
    """Step index → (exit code, its last output lines)."""
    results: dict[int, tuple[int, str]] = {}
    for line in stdout.splitlines():
        if line.startswith(RECOVERED + " "):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
                results[int(parts[1])] = (int(parts[2]), parts[3].strip() if len(parts) > 3 else "")
    return results


class Execution:
    """One plan on one host: what ran, what is armed, the lock if held."""

    def __init__(self, session: Runner, host: str, report: HostReport, out: Reporter,
                 gate: threading.Semaphore | None = None, timeout: float | None = None) -> None:
        self.session, self.host, self.report, self.out = session, host, report, out
        self.gate, self.timeout = gate, timeout
        self.facts: Facts = {}
        self.armed: list[str] = []
        self.held: lock.Held | None = None
        self.plan = Plan(())
        self.stray = ""  # the remote shell of a round trip that was cut off (timed out)

    def run(self, build: Callable[[Facts], Plan]) -> bool:
        """Run the plan `build` makes from what the hosts reported so far (it is rebuilt after each
        round trip, so later actions can use the release name the host settled on). False if failed."""
        done = 0
        try:
            while True:
                self.plan = build(self.facts)
                if done >= len(self.plan.actions):
                    return True
                if CANCELLED.is_set():
                    raise HostError(f"{self.host}: interrupted (Ctrl-C or SIGTERM): nothing new started")
                self._action(self.plan.actions[done])
                done += 1
        except HostError as e:
            self.report.status, self.report.error = "failed", self.out.redact(str(e))
            # Recovery from everything the host reported, up to the failure (what ran before a change,
            # reported in the failed round trip itself); the last plan if it cannot be rebuilt.
            with suppress(HostError):
                self.plan = build(self.facts)
            self.recover()
            return False

    def _action(self, action: Action) -> None:
        if isinstance(action, Script):
            gate: AbstractContextManager[object] = (
                _Gate(self.gate, self.host) if action.rolling and self.gate else nullcontext())
            with gate:
                self._script(action)
            if action.commits:
                self.armed.clear()
        elif isinstance(action, Upload):
            self._arm(action.arms)
            if action.local is None:
                raise HostError(f"{self.host}: {action.stage}: nothing to upload (a dry run's plan)")
            with self.out.stage(self.report, action.stage):
                self.session.put(action.local, action.remote, action.stage, timeout=self.timeout)
        elif isinstance(action, Lock):
            with self.out.stage(self.report, action.stage):
                self.held = lock.acquire(self.session.real(), action.app, action.holder, action.force)
        elif isinstance(action, Unlock):
            with self.out.stage(self.report, action.stage):
                held, self.held = self.held, None
                if held is not None:
                    held.release()

    def _arm(self, names: tuple[str, ...]) -> None:
        for n in names:
            if n not in self.armed:
                self.armed.append(n)

    def _script(self, action: Script) -> None:
        clock = self.out.clock(self.report)
        arms: dict[str, tuple[str, ...]] = {}
        for step in action.steps:
            arms[step.stage] = arms.get(step.stage, ()) + step.arms
        output: list[str] = []

        def on_line(line: str) -> None:
            marker, _, value = line.partition(" ")
            if marker == rel.STAGE:
                clock.begin(value.strip())
                self._arm(arms.get(value.strip(), ()))
            elif marker.startswith("@@deploytool-"):
                self.facts[marker.removeprefix("@@deploytool-")] = value.strip()
            else:
                output.append(line)

        # The remote shell leads its own process group (sshd starts it with setsid): if this round trip
        # times out, recovery stops what is left of it before putting things back.
        commands: list[str] = [f"echo {PID} $$"]
        self.facts.pop("pid", None)
        if self.held is not None:
            commands.append(self.held.still_ours())
        last = None
        for step in action.steps:
            if step.stage != last:
                commands.append(rel.stage(step.stage))
                last = step.stage
            commands.append(step.command)
        first = action.steps[0].stage if action.steps else "script"
        try:
            r = self.session.run(script(*commands), first, check=False, timeout=self.timeout, on_line=on_line)
        except HostError:
            if clock.current is None:  # cut off before its first stage announced itself
                clock.begin(first)
            clock.end("failed")
            self.stray = self.facts.get("pid", "")
            raise
        self.facts[f"output:{first}"] = "\n".join(output)
        stage = clock.current.name if clock.current else first
        clock.end("ok" if r.exited == 0 else "failed")
        if r.exited != 0:
            raise HostError(f"{self.host}: {stage}: exit {r.exited}: {last_lines(r.stderr or r.stdout)}")

    def recover(self) -> None:
        """Run every armed recovery step, each on its own and reported; then let go of the lock."""
        steps = [r for r in self.plan.recovery if r.name in self.armed]
        if self.stray.isdigit():
            steps.insert(0, Recovery("stop the stage", f"kill -TERM -- -{self.stray} 2>/dev/null; true"))
        errors: list[str] = []
        if steps:
            results: dict[int, tuple[int, str]] = {}
            try:
                r = self.session.run(recovery_script(steps), "recover", check=False, timeout=self.timeout)
                results = parse_recovered(r.stdout)
            except HostError as e:
                errors.append(str(e))
            for i, step in enumerate(steps):
                code, text = results.get(i, (-1, "not run: the host could not be reached"))
                st = StageReport(f"recover:{step.name}", status="ok" if code == 0 else "failed",
                                 started=round(0.0, 3))
                self.report.stages.append(st)
                self.out.line(f"{self.report.host:<10} {self.report.app:<10} {st.name:<10} {st.status}")
                if code != 0:
                    errors.append(f"{step.name}: " + (f"exit {code}: {text}" if code >= 0 else text))
        self.armed.clear()
        if self.held is not None:
            held, self.held = self.held, None
            try:
                with self.out.stage(self.report, "unlock"):
                    held.release()
            except HostError as e:
                errors.append(str(e))
        if errors:
            self.report.error = self.out.redact(f"{self.report.error}; recovery failed: {'; '.join(errors)}")


class _Gate:
    """The rolling gate, waited for in slices so an interruption is noticed while waiting."""

    def __init__(self, sem: threading.Semaphore, host: str) -> None:
        self.sem, self.host = sem, host

    def __enter__(self) -> None:
        while not self.sem.acquire(timeout=0.2):
            if CANCELLED.is_set():
                raise HostError(f"{self.host}: interrupted (Ctrl-C or SIGTERM) while waiting for the rolling "
                                "restart: nothing new started")

    def __exit__(self, *exc: object) -> None:
        self.sem.release()
