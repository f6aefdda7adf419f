"""The one executor, its controller side: sends a host's plan (deploytool.engine.plan) to the host once, where
the plan runner (deploytool.engine.host_runner, the protocol is written down there) runs it, and steers it.

- The host runs every action and keeps the armed recovery itself: if this controller is killed or its
  link goes down, the host puts itself back (before the commit point) or finishes (after it).
- Steering: uploads are made from here when the runner asks for them; the rolling gate is granted here;
  after each script the rest of the plan is rebuilt from what the host reported and sent on; Ctrl-C or
  SIGTERM (rolling.CANCELLED) tells the runner to start nothing new and put the host back.
- Timeouts: each stage may take the plan's stage timeout (the runner enforces it and stops the stage);
  a host answering no keepalive is lost within the liveness bound (deploytool.remote); the runner counts
  its controller as gone after `lock.HEARTBEAT_MISSES` missed heartbeats.
- Reporting: a progress line and a report entry per stage, per recovery step."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from deploytool.commands import release as rel
from deploytool.engine import host_runner
from deploytool.engine.lock import HEARTBEAT_MISSES, Holder
from deploytool.engine.plan import Action, Facts, Lock, Plan, Script, Upload
from deploytool.engine.rolling import CANCELLED
from deploytool.errors import HostError
from deploytool.remote import script, sign
from deploytool.report import HostReport, Reporter, StageClock, StageReport

PROGRAM = Path(host_runner.__file__).read_text()
EVENT = host_runner.EVENT.removeprefix("@@deploytool-")
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM): nothing new started"


class Stream(Protocol):
    """A command running on the host that we talk to (deploytool.remote.Channel)."""

    def send(self, text: str) -> bool: ...

    def read_line(self, timeout: float) -> str | None: ...

    def ended(self) -> bool: ...

    def error_text(self) -> str: ...

    def wait(self, timeout: float) -> int | None: ...

    def close(self) -> None: ...


class Runner(Protocol):
    """What the executor needs from a host session (deploytool.remote.Session)."""

    nonce: str

    @property
    def keepalive(self) -> float: ...

    def start(self, command: str, stage: str) -> Stream: ...

    def put(self, local: Path, remote: str, stage: str, timeout: float | None = ...) -> None: ...

    def lost(self) -> bool: ...


def action_data(action: Action, nonce: str) -> dict[str, Any]:
    """An action as the runner gets it: scripts as shell text signed with the session's nonce."""
    if isinstance(action, Script):
        commands: list[str] = []
        arms: dict[str, list[str]] = {}
        last = None
        for step in action.steps:
            if step.stage != last:
                commands.append(rel.stage(step.stage))
                last = step.stage
            commands.append(step.command)
            arms.setdefault(step.stage, [])
            arms[step.stage] += [a for a in step.arms if a not in arms[step.stage]]
        return {"type": "script", "text": sign(script(*commands), nonce),
                "first": action.steps[0].stage if action.steps else "script",
                "arms": arms, "rolling": action.rolling, "commits": action.commits}
    if isinstance(action, Upload):
        return {"type": "upload", "stage": action.stage, "arms": list(action.arms)}
    if isinstance(action, Lock):
        return {"type": "lock", "stage": action.stage, "deploy_to": action.app.deploy_to,
                "record": action.holder.json(), "token": action.holder.token, "force": action.force}
    return {"type": "unlock", "stage": action.stage}


def program_data(plan: Plan, nonce: str) -> dict[str, Any]:
    return {"actions": [action_data(a, nonce) for a in plan.actions],
            "recovery": [{"name": r.name, "command": sign(r.command, nonce)} for r in plan.recovery]}


class Hold:
    """Where a plan's `held` script waits until the controller decides (a canary's later waves, before
    their switch): `release()` lets the hosts go on, `refuse(reason)` puts them back. The host waits as
    long as this controller's heartbeat reaches it (deploytool.engine.host_runner)."""

    def __init__(self, until: str) -> None:
        self.until = until  # what it waits for, as the progress line says it
        self._decided = threading.Event()
        self.refused: str | None = None

    def release(self) -> None:
        self._decided.set()

    def refuse(self, reason: str) -> None:
        if not self._decided.is_set():
            self.refused = reason
            self._decided.set()

    def wait(self, slice_: float = 0.2) -> bool:
        """True once decided; False after `slice_` seconds undecided."""
        return self._decided.wait(slice_)


class Execution:
    """One plan on one host, steered from here while the host runs it."""

    def __init__(self, session: Runner, host: str, report: HostReport, out: Reporter,
                 gate: threading.Semaphore | None = None, timeout: float | None = None,
                 hold: Hold | None = None) -> None:
        self.session, self.host, self.report, self.out = session, host, report, out
        self.gate, self.timeout, self.hold = gate, timeout, hold
        self.hold_passed = False
        self.facts: Facts = {}
        self.plan = Plan(())
        self.sent: dict[str, Any] = {}
        self.gated = False
        self.errors: list[str] = []
        self.finished = ""
        self.aborted = False
        self.expected = ""  # the stage the host starts next (between two of them, where it was)
        self.stream: Stream | None = None
        self.sending = threading.Lock()  # one message at a time: a heartbeat never splits a message

    @property
    def bound(self) -> float:
        """Seconds without a heartbeat after which the host's runner counts this controller as gone."""
        return self.session.keepalive * HEARTBEAT_MISSES

    def run(self, build: Callable[[Facts], Plan]) -> bool:
        """Run the plan `build` makes from what the host reported so far (it is rebuilt after each script,
        so later actions can use the release name the host settled on). False if it failed."""
        self.build = build
        try:
            self.plan = build(self.facts)
            if not self.plan.actions:
                return True
            if CANCELLED.is_set():
                raise HostError(f"{self.host}: {INTERRUPTED}")
            self._drive()
        except HostError as e:
            self.report.status = "failed"
            self.report.error = self.out.redact(str(e))
        finally:
            self._ungate()
        if self.report.status == "failed" or self.errors:
            self.report.status = "failed"
            if self.errors:
                error = self.report.error or f"{self.host}: failed"
                self.report.error = self.out.redact(f"{error}; recovery failed: {'; '.join(self.errors)}")
            return False
        return True

    def _drive(self) -> None:
        clock = self.out.clock(self.report)
        first = self.expected = self._first_stage()
        stream = self.stream = self.session.start(host_runner.BOOT, first)
        self.sent = program_data(self.plan, self.session.nonce)
        data = json.dumps({"nonce": self.session.nonce, "bound": self.bound,
                           "timeout": self.timeout or 600.0, **self.sent})
        self._send(f"{len(PROGRAM.encode())}\n{PROGRAM}{len(data.encode())}\n{data}")
        stopped = threading.Event()

        def beat() -> None:
            while not stopped.wait(self.session.keepalive):
                if not self._send("\n"):
                    return

        threading.Thread(target=beat, daemon=True, name="runner-heartbeat").start()
        try:
            self._follow(stream, clock)
        except HostError:
            self._cut_off(clock)
            raise
        finally:
            stopped.set()
            stream.close()

    def _send(self, text: str) -> bool:
        assert self.stream is not None
        with self.sending:
            return self.stream.send(text)

    def _message(self, data: dict[str, Any]) -> bool:
        return self._send(json.dumps(data) + "\n")

    def _first_stage(self, index: int = 0) -> str:
        if index >= len(self.plan.actions):
            return "finish"
        a = self.plan.actions[index]
        if isinstance(a, Script):
            return a.steps[0].stage if a.steps else "script"
        return a.stage

    def _cut_off(self, clock: StageClock) -> None:
        """The stage the host was in (or about to start) when it was cut off: reported failed."""
        if clock.current is None:
            clock.begin(self.expected)
        clock.end("failed")

    def _follow(self, stream: Stream, clock: StageClock) -> None:
        output: list[str] = []
        while not self.finished:
            if CANCELLED.is_set() and not self.aborted:
                self.aborted = self._message({"abort": INTERRUPTED})
            line = stream.read_line(1.0)
            if line is None:
                if self.session.lost():
                    self._lost(clock)
                if stream.ended():
                    raise HostError(f"{self.host}: {clock.current.name if clock.current else self.expected}: the "
                                    f"plan runner ended without a result: "
                                    f"{_last(stream.error_text())}")
                continue
            marker, _, value = line.partition(" ")
            if marker == rel.STAGE:
                clock.begin(value.strip())
                self.expected = value.strip()
            elif marker == "@@deploytool-" + EVENT:
                self._event(json.loads(value), stream, clock, output)
            elif marker.startswith("@@deploytool-"):
                self.facts[marker.removeprefix("@@deploytool-")] = value.strip()
            else:
                output.append(line)

    def _event(self, ev: dict[str, Any], stream: Stream, clock: StageClock, output: list[str]) -> None:
        if "done" in ev:
            i = int(ev["done"])
            clock.end("ok")
            self._ungate()
            action = self.plan.actions[i]
            if isinstance(action, Script) and action.steps:
                self.facts[f"output:{action.steps[0].stage}"] = "\n".join(output)
            output.clear()
            self._go(stream, i + 1, replan=True)
            self.expected = self._first_stage(i + 1)
        elif ev.get("wait") == "upload":
            i = int(ev["at"])
            action = self.plan.actions[i]
            assert isinstance(action, Upload)
            if action.local is None:
                self._abort(stream, f"{action.stage}: nothing to upload (a dry run's plan)")
                return
            try:
                self.session.put(action.local, action.remote, action.stage, timeout=self.timeout)
            except HostError as e:
                if self.session.lost():
                    raise self._with_host_recovery(e) from None
                self._abort(stream, str(e).removeprefix(f"{self.host}: "))
                return
            self._go(stream, i, replan=True)
        elif ev.get("wait") == "gate":
            if self._take_gate():
                self._go(stream, int(ev["at"]))
            else:
                self._abort(stream, INTERRUPTED)
        elif "failed" in ev:
            clock.end("failed")
            self._ungate()
            if self.report.status != "failed":
                self.report.status = "failed"
                self.report.error = self.out.redact(f"{self.host}: {ev['error']}")
            # The recovery from everything the host reported up to the failure; the last one if the plan
            # cannot be rebuilt.
            with contextlib.suppress(HostError):
                self.plan = self.build(self.facts)
            recovery = program_data(self.plan, self.session.nonce)["recovery"]
            self._message({"recover": 1, "recovery": recovery})
        elif "busy" in ev:
            self.report.status, self.report.error = "failed", self._busy(ev["busy"], bool(ev.get("legacy")))
        elif "recovered" in ev:
            name, rc = str(ev["recovered"]), int(ev["rc"])
            st = StageReport(f"recover:{name}", status="ok" if rc == 0 else "failed")
            self.report.stages.append(st)
            self.out.line(f"{self.report.host:<10} {self.report.app:<10} {st.name:<10} {st.status}")
            if rc != 0:
                self.errors.append(f"{name}: exit {rc}: {ev.get('text') or '(no output)'}")
        elif "finished" in ev:
            clock.end("ok")
            self.finished = str(ev["finished"])
            if self.finished != "ok" and self.report.status != "failed":
                self.report.status, self.report.error = "failed", f"{self.host}: failed"

    def _go(self, stream: Stream, index: int, replan: bool = False) -> None:
        if CANCELLED.is_set():
            # Interrupted while the host finished its last action: it gets the abort, never a go, even if
            # the loop has not sent the abort yet (the host would otherwise start the next action).
            if not self.aborted:
                self.aborted = self._message({"abort": INTERRUPTED})
            return
        if self._held(index):
            refused = self._wait_hold()
            if refused is not None:
                self._abort(stream, refused)
                return
        message: dict[str, Any] = {"go": index}
        if replan:
            self.plan = self.build(self.facts)
            now = program_data(self.plan, self.session.nonce)
            if now != self.sent:
                message.update(now)
                self.sent = now
        self._message(message)

    def _held(self, index: int) -> bool:
        action = self.plan.actions[index] if index < len(self.plan.actions) else None
        return self.hold is not None and not self.hold_passed and isinstance(action, Script) and action.held

    def _wait_hold(self) -> str | None:
        """Wait for the hold's decision (None: go on; else why not), noticing an interruption or a lost
        host meanwhile."""
        assert self.hold is not None
        self.out.line(f"{self.report.host:<10} {self.report.app:<10} {'held':<10} until {self.hold.until}")
        while not self.hold.wait():
            if CANCELLED.is_set():
                return INTERRUPTED
            if self.session.lost():
                raise HostError(self._lost_text(self.expected))
        self.hold_passed = True
        return self.hold.refused

    def _abort(self, stream: Stream, reason: str) -> None:
        """A failure seen here (an upload): the host is told to put itself back."""
        self.report.status, self.report.error = "failed", self.out.redact(f"{self.host}: {reason}")
        self.aborted = self._message({"abort": reason})

    def _take_gate(self) -> bool:
        """The rolling gate, waited for in slices so an interruption is noticed while waiting."""
        if self.gate is None:
            return True
        while not self.gate.acquire(timeout=0.2):
            if CANCELLED.is_set():
                return False
        self.gated = True
        return True

    def _ungate(self) -> None:
        if self.gated and self.gate is not None:
            self.gated = False
            self.gate.release()

    def _lost(self, clock: StageClock) -> None:
        raise HostError(self._lost_text(clock.current.name if clock.current else self.expected))

    def _lost_text(self, stage: str) -> str:
        return (f"{self.host}: {stage}: no answer from the host for over {self.session.keepalive * 3:g}s "
                "(network or host down); "
                f"gave up here; the host runs its plan's recovery by itself once {self.bound:g}s pass "
                "without this controller's heartbeat (or finishes a committed deploy)")

    def _with_host_recovery(self, e: HostError) -> HostError:
        return HostError(f"{e}; the host runs its plan's recovery by itself once {self.bound:g}s pass "
                         "without this controller's heartbeat")

    def _busy(self, record: str, legacy: bool) -> str:
        other = Holder.parse(record)
        who = other.describe() if other else "an unknown holder"
        app = self.report.app
        if legacy:
            return (f"{self.host}: lock: {app} is being deployed by {who} (a lock directory of an older "
                    "deploytool); if that deploy died, clear it with --force-unlock")
        return (f"{self.host}: lock: {app} is being deployed by {who}; it is alive (its heartbeat reached the "
                f"host within {self.bound:g}s), so the lock is not broken even with --force-unlock; a dead "
                "deploy's lock frees itself within that bound")


def _last(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:]) if lines else "(no output)"


