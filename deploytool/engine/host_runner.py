"""The plan runner: the program a host runs its own plan with. The controller sends it once per
(host, app) over the SSH session; it then runs every action of the plan on the host, keeps the armed
recovery, and, if its controller goes away, puts the host back by itself (or finishes a committed plan).

This file is sent to the host as it is and run by the host's `python3` (3.7 or newer, standard library
only): it imports nothing from deploytool. deploytool.engine.execute is its controller side.

Protocol (one SSH channel; the controller's side in deploytool.engine.execute):

1. The controller runs BOOT (below) with `bash -s`, then writes on its stdin: the length of this
   program in bytes and a newline, the program; the length of the plan and a newline, the plan (JSON,
   below). Both travel on stdin, never in an argv: the plan holds environment files' content.
2. The runner then reads lines from the controller on stdin. Every line is a heartbeat; a line holding a
   JSON object is also a message:
       {"go": N}                                 carry on with action N
       {"go": N, "actions": [...], "recovery": [...]}   the same, the rest of the plan rebuilt from what
                                                 the host reported (actions N.. and the recovery replaced)
       {"abort": "REASON"}                       stop: start nothing new, put the host back
       {"recover": 1, "recovery": [...]}         after a failure: the recovery rebuilt from all the host
                                                 reported (waited for while the controller is there)
   The controller is gone when stdin ends (its SSH session ended: killed, crashed) or when no line came
   for `bound` seconds (its link is down, or it froze).
3. The runner writes lines on stdout, every marker signed with the plan's nonce as the controller's own
   scripts sign theirs (deploytool.remote): the scripts' own lines (`@@deploytool-stage NAME`, facts,
   output) as they come, and its events as `@@deploytool-runner JSON`:
       {"done": N}                 script N succeeded; the runner waits for `go` N+1, the last script
                                   too (the rest of the plan may depend on what it reported), as long
                                   as the controller's heartbeat arrives
       {"wait": "gate", "at": N}   action N restarts workers: it starts once the controller says go
       {"wait": "upload", "at": N} the controller uploads action N's file, then says go
       {"failed": STAGE, "error": TEXT}   the action failed (exit code, timeout, lock busy, lost controller)
       {"busy": RECORD, "legacy": BOOL}   the deploy lock is held (RECORD: its holder's record)
       {"recovered": NAME, "rc": RC, "text": TEXT}   a recovery step ran
       {"finished": "ok" | "failed"}     the last line
4. Commit point: a script with `commits` succeeded. Before it, a failure, an abort or the controller's
   going away runs every armed recovery step (each on its own, in the plan's order), then frees the
   lock. After it, nothing is undone; a controller going away leaves the runner to finish the plan on
   its own (cleanup, revision log, unlock), skipping the waits.
5. With a lock, the runner records each run in `deploy_to/.deploy.last` (JSON: holder, state running,
   ok, failed or abandoned, stage, reason, what the host did); once it holds the lock it reports the
   record of the run before as the fact `@@deploytool-last JSON`. `fab releases` and
   `fab workers.status` read it too.

Plan (JSON): {"nonce", "bound" (seconds), "timeout" (seconds per stage), "actions": [...],
"recovery": [{"name", "command"}]}; actions:
    {"type": "script", "text": SHELL, "first": STAGE, "arms": {STAGE: [NAME...]}, "rolling", "commits"}
    {"type": "upload", "stage": STAGE, "arms": [NAME...]}
    {"type": "lock", "stage", "deploy_to", "record": HOLDER_JSON, "token", "force"}
    {"type": "unlock", "stage"}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Dict  # noqa: UP035 - see Message

Message = Dict[str, Any]  # noqa: UP006 - evaluated at run time, on hosts with Python older than 3.9

# What the controller runs with `bash -s`: python3 reads the program's length, then the program itself,
# byte for byte from stdin, so every byte after it (the plan, the controller's lines) stays for the runner.
# The system's python3, never one the login shell's PATH puts first (a project's shim or virtualenv).
BOOT = r"""{
py=$(PATH=/usr/local/bin:/usr/bin:/bin command -v python3) ||
  { echo 'deploytool needs python3 (in /usr/local/bin, /usr/bin or /bin) to run its plan' >&2; exit 127; }
exec "$py" -c 'import os
def line():
    b = b""
    while not b.endswith(b"\n"):
        c = os.read(0, 1)
        if not c:
            raise SystemExit(3)
        b += c
    return b
def exactly(n):
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(3)
        b += c
    return b
exec(compile(exactly(int(line())), "deploytool-runner", "exec"))'
}"""

MARKER = re.compile(r"(?<!@)@@deploytool-([a-z]+)\b")
STAGE = "@@deploytool-stage"
EVENT = "@@deploytool-runner"
LAST = "@@deploytool-last"
LOCK_BUSY = 75
LEGACY_LOCK = 76


def read_exactly(n: int) -> bytes:
    b = b""
    while len(b) < n:
        c = os.read(0, n - len(b))
        if not c:
            raise SystemExit(3)
        b += c
    return b


def read_line() -> bytes:
    b = b""
    while not b.endswith(b"\n"):
        c = os.read(0, 1)
        if not c:
            raise SystemExit(3)
        b += c
    return b


class Controller:
    """The controller's lines on stdin, read by a thread: any line is a heartbeat, a JSON object a message."""

    def __init__(self, bound: float) -> None:
        self.bound = bound
        self.last = time.monotonic()
        self.eof = False
        self.messages: list[Message] = []
        self.cond = threading.Condition()
        t = threading.Thread(target=self._read, name="controller")
        t.daemon = True
        t.start()

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.last = time.monotonic()
                pending += data
                while b"\n" in pending:
                    raw, _, pending = pending.partition(b"\n")
                    raw = raw.strip()
                    if raw.startswith(b"{"):
                        with contextlib.suppress(ValueError):
                            self.messages.append(json.loads(raw.decode()))
                self.cond.notify_all()

    def gone(self) -> str | None:
        """Why the controller counts as gone, or None while it is there."""
        with self.cond:
            if self.eof:
                return "its SSH session ended (controller killed or its connection closed)"
            silent = time.monotonic() - self.last
            if silent > self.bound:
                return f"no heartbeat for {silent:.0f}s (controller frozen or its link down)"
        return None

    def abort(self) -> str | None:
        with self.cond:
            for m in self.messages:
                if "abort" in m:
                    return str(m["abort"])
        return None

    def wait_go(self, index: int, limit: float | None = None) -> Message | None:
        """The `go` for action `index`; None once the controller is gone or aborted, or `limit` passed."""
        return self.wait_for(lambda m: m.get("go") == index, stop_at_abort=True, limit=limit)

    def wait_for(self, wanted: Callable[[Message], bool], stop_at_abort: bool = False,
                 limit: float | None = None) -> Message | None:
        """The first message `wanted` accepts (those before it dropped); None once the controller is gone
        (or `limit` seconds passed)."""
        deadline = None if limit is None else time.monotonic() + limit
        with self.cond:
            while True:
                for i, m in enumerate(self.messages):
                    if stop_at_abort and "abort" in m:
                        return None
                    if wanted(m):
                        del self.messages[: i + 1]
                        return m
                if self.eof or time.monotonic() - self.last > self.bound:
                    return None
                if deadline is not None and time.monotonic() > deadline:
                    return None
                self.cond.wait(0.5)


class Output:
    """Lines to the controller, markers signed; once it is gone, nothing more is written."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self.closed = False
        self.lock = threading.Lock()

    def sign(self, text: str) -> str:
        """A line's leading marker signed (only there: a marker inside a line is no marker)."""
        return MARKER.sub(lambda m: m.group(0) + "-" + self.nonce, text, count=1) if MARKER.match(text) else text

    def verify(self, line: str) -> str:
        m = MARKER.match(line)
        if not m:
            return line
        signed = m.group(0) + "-" + self.nonce
        if line.startswith(signed):
            return m.group(0) + line[len(signed):]
        return "(unsigned) " + line

    def line(self, text: str) -> None:
        """A line as it is (a script's own, already verified: its markers are signed again)."""
        with self.lock:
            if self.closed:
                return
            try:
                os.write(1, (self.sign(text) + "\n").encode())
            except OSError:
                self.closed = True

    def event(self, **data: Any) -> None:
        self.line(EVENT + " " + json.dumps(data, sort_keys=True))


class Failed(Exception):
    def __init__(self, stage: str, error: str, timed_out_pgid: int | None = None) -> None:
        Exception.__init__(self, error)
        self.stage, self.error, self.pgid = stage, error, timed_out_pgid


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


class Run:
    """One plan on this host: its actions, what is armed, the lock, the run record."""

    def __init__(self, plan: Message) -> None:
        self.plan = plan
        self.actions = list(plan["actions"])
        self.recovery = list(plan.get("recovery", []))
        self.timeout = float(plan.get("timeout", 600))
        self.out = Output(plan["nonce"])
        self.controller = Controller(float(plan.get("bound", 20)))
        self.armed: list[str] = []
        self.committed = False
        self.lock_fd: int | None = None
        self.lock_paths = ("", "")  # (record, token)
        self.last_path: str | None = None
        self.record: Message = {}
        self.stage = ""
        self.abandoned: str | None = None  # why the controller counts as gone, once it does

    # -- the run record (deploy_to/.deploy.last) --

    def note(self, **changes: Any) -> None:
        self.record.update(changes)
        if not self.last_path:
            return
        self.record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = f"{self.last_path}.{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(self.record, sort_keys=True) + "\n")
            os.replace(tmp, self.last_path)
        except OSError:
            # A full disk: the record stays as it was, and no half-written copy is left beside it.
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    # -- actions --

    def arm(self, names: list[str]) -> None:
        for n in names:
            if n not in self.armed:
                self.armed.append(n)

    def gone(self) -> str | None:
        if self.abandoned is None:
            self.abandoned = self.controller.gone()
            if self.abandoned is not None:
                self.note(state="abandoned",
                          reason=f"its controller went away at stage {self.stage or 'start'}: {self.abandoned}")
        return self.abandoned

    def main(self) -> int:
        try:
            i = 0
            while i < len(self.actions):
                a = self.actions[i]
                if not self.committed:
                    reason = self.controller.abort()
                    if reason is not None:
                        raise Failed(self.stage or "start", reason)
                    gone = self.gone()
                    if gone:
                        raise Failed(self.stage or "start", "the controller went away: " + gone)
                self.act(i, a)
                if a["type"] == "script":
                    # Even after the last one: the plan may go on once the controller has read what
                    # the host reported (a rollback's target, once the host listed its releases).
                    self.out.event(done=i)
                    self.proceed(i + 1, limit=self.timeout)
                i += 1
        except Exception as e:  # a fault of the runner itself still puts the host back
            f = e if isinstance(e, Failed) else Failed(self.stage or "start",
                                                       f"{self.stage or 'start'}: the plan runner failed: {e!r}")
            self.out.event(failed=f.stage, error=f.error)
            if f.pgid:
                self.stop_stage(f.pgid)
            if self.armed and not self.gone():
                # A live controller rebuilds the recovery from all the host reported, the failed script's
                # facts included (the instances that ran before an install); a gone one left the last plan.
                m = self.controller.wait_for(lambda m: "recover" in m, limit=self.timeout)
                if m is not None:
                    self.recovery = list(m.get("recovery", self.recovery))
            self.recover(f.stage)
            self.out.event(finished="failed")
            return 1
        self.out.event(finished="ok")
        return 0

    def proceed(self, index: int, what: str = "the controller's go", limit: float | None = None) -> None:
        """Wait for the controller's go for action `index` (with the rest of the plan, rebuilt from what
        the host reported). As long as the controller's heartbeat arrives: a live controller decides
        when (the rolling gate), a gone one is noticed within `bound`."""
        if self.committed and self.gone():
            return  # finish on its own
        m = self.controller.wait_go(index, limit)
        if m is None:
            if self.committed:
                self.gone()
                return
            reason = self.controller.abort()
            if reason is None and self.gone() is None:
                reason = f"no word from the controller within {limit:g}s while this host waited for {what}"
            if reason is None:
                reason = f"the controller went away while this host waited for {what}: {self.gone()}"
            raise Failed(self.stage, reason)
        if "actions" in m:
            self.actions[index:] = m["actions"][index:]
            self.recovery = list(m.get("recovery", self.recovery))

    def act(self, i: int, a: Message) -> None:
        kind = a["type"]
        if kind == "lock":
            self.begin(a.get("stage", "lock"))
            self.lock(a)
        elif kind == "unlock":
            self.begin(a.get("stage", "unlock"))
            # The run's outcome is written while the lock is still ours: the next deploy's record wins.
            self.note(state="abandoned" if self.gone() else "ok",
                      did="finished the plan on its own" if self.abandoned else "")
            self.last_path = None
            self.unlock()
        elif kind == "upload":
            self.arm(a.get("arms", []))
            self.begin(a["stage"])
            self.out.event(wait="upload", at=i)
            self.proceed(i, "its upload", self.timeout)
        else:
            if a.get("rolling") and not (self.committed and self.gone()):
                self.stage = a.get("first", "script")
                self.out.event(wait="gate", at=i)
                self.proceed(i, "its turn to restart its workers")
            self.script(a)
            if a.get("commits"):
                self.committed = True
                self.armed = []

    def begin(self, stage: str) -> None:
        self.stage = stage
        self.out.line(STAGE + " " + stage)
        self.note(stage=stage)

    def script(self, a: Message) -> None:
        arms = a.get("arms", {})
        proc = subprocess.Popen(["bash", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        text = "{\n" + a["text"] + "\n} </dev/null\n"
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(text.encode())
            proc.stdin.close()
        except OSError:
            pass
        stage = a.get("first", "script")
        self.stage = stage
        deadline = time.monotonic() + self.timeout
        err, pending = b"", b""
        tail: list[str] = []
        streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
        while streams:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(stage, f"{stage}: timed out after {self.timeout:g}s (the stage's timeout); "
                             f"{last_lines(err.decode(errors='replace'))}", proc.pid)
            ready, _, _ = select.select(list(streams), [], [], min(left, 1.0))
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    del streams[fd]
                    continue
                if streams[fd] == "err":
                    err = (err + data)[-65536:]
                    continue
                pending += data
                while b"\n" in pending:
                    raw, _, pending = pending.partition(b"\n")
                    line = self.out.verify(raw.decode(errors="replace"))
                    tail = ([*tail, line])[-10:]
                    if line.startswith(STAGE + " "):
                        stage = line.split(" ", 1)[1].strip()
                        self.stage = stage
                        self.arm(arms.get(stage, []))
                        self.note(stage=stage)
                        deadline = time.monotonic() + self.timeout
                    self.out.line(line)
        if pending:
            self.out.line(self.out.verify(pending.decode(errors="replace")))
        rc = proc.wait()
        if rc != 0:
            out_text = err.decode(errors="replace") or "\n".join(
                ln for ln in tail if not ln.startswith("@@deploytool-"))
            raise Failed(stage, f"{stage}: exit {rc}: {last_lines(out_text)}")

    def stop_stage(self, pgid: int) -> None:
        """A stage that timed out: its process group is stopped before anything is put back."""
        rc = 0
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except OSError:
            rc = 1
        self.out.event(recovered="stop the stage", rc=rc, text="")

    # -- the lock --

    def lock(self, a: Message) -> None:
        deploy_to = a["deploy_to"]
        record, flock = deploy_to + "/.deploy.lock", deploy_to + "/.deploy.flock"
        try:
            os.makedirs(deploy_to, exist_ok=True)
        except OSError as e:
            raise Failed("lock", f"lock: cannot create {deploy_to}: {e.strerror}") from None
        self.last_path = deploy_to + "/.deploy.last"
        if os.path.isdir(record):
            if not a.get("force"):
                self.last_path = None
                self.out.event(busy=read(record + "/holder") or "{}", legacy=True)
                raise Failed("lock", "lock: a lock directory of an older deploytool")
            subprocess.call(["rm", "-rf", record])
        fd = os.open(flock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if not take(fd, record):
            os.close(fd)
            self.last_path = None
            self.out.event(busy=read(record) or "{}", legacy=False)
            raise Failed("lock", "lock: busy")
        tmp = f"{record}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(a["record"] + "\n")
        os.replace(tmp, record)
        self.lock_fd, self.lock_paths = fd, (record, a["token"])
        # The record of the run before this one, for the controller to tell (was it abandoned?).
        self.out.line(LAST + " " + " ".join(read(self.last_path).split()))
        self.record = {"holder": json.loads(a["record"]), "state": "running", "pid": os.getpid()}
        self.note(stage="lock")

    def unlock(self) -> None:
        if self.lock_fd is None:
            return
        record, token = self.lock_paths
        if token in read(record):
            with contextlib.suppress(OSError):
                os.unlink(record)
        os.close(self.lock_fd)
        self.lock_fd = None

    # -- recovery --

    def recovery_step(self, command: str) -> tuple[int, str]:
        """One recovery step in a shell of its own, bounded by the stage timeout: (exit code, last lines)."""
        proc = subprocess.Popen(["bash", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(("{\n" + command + "\n} </dev/null 2>&1\n").encode(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return -1, f"timed out after {self.timeout:g}s"
        return proc.returncode, last_lines(out.decode(errors="replace")) if proc.returncode else ""

    def recover(self, stage: str) -> None:
        steps = [r for r in self.recovery if r["name"] in self.armed]
        results: list[str] = []
        for r in steps:
            rc, text = self.recovery_step(r["command"])
            results.append(f"{r['name']} {'ok' if rc == 0 else 'failed'}")
            self.out.event(recovered=r["name"], rc=rc, text=text)
        self.armed = []
        self.committed = False
        did = ("put itself back: " + ", ".join(results)) if results else "had nothing to put back"
        if self.abandoned is not None:
            self.note(state="abandoned", stage=stage, did=did)
        else:
            self.note(state="failed", stage=stage, did=did)
        if self.lock_fd is not None:
            self.out.line(STAGE + " unlock")
            self.unlock()


def take(fd: int, record: str) -> bool:
    """The flock, or False while a deploy holds it. A deploy that has just taken it writes its record a
    moment later: the record is waited for (at most 2 s) so that it can be named; a read-only probe (a
    dry run's lock check) holds the flock only for an instant, so it is tried again meanwhile."""
    for _ in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if read(record):
                return False
            time.sleep(0.1)
    return False


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def main() -> int:
    # The runner outlives its SSH session on purpose: a hang-up must not stop it half-way.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    plan = json.loads(read_exactly(int(read_line())).decode())
    return Run(plan).main()


if __name__ == "__main__":
    sys.exit(main())
