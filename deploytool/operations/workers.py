"""Worker operations on one host for one app: install, uninstall, start, stop, quiet, restart, enable,
disable as plans (`*_plan`: pure, from the kinds table and the inventory, run by deploytool.engine.runner, so a
dry run prints exactly what would be sent); what a sync would change (`preview`) and `status`, read only.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from deploytool import context
from deploytool.commands import ready, running, unitfiles
from deploytool.commands import release as rel
from deploytool.commands import systemctl as sc
from deploytool.commands.quiet import celery_cancel_consumer, until_replied
from deploytool.commands.requeue import requeues
from deploytool.engine.plan import Facts, Plan, Recovery, Script, Step
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.jobs import collect
from deploytool.jobs.model import Reading
from deploytool.kinds import KINDS, Quiet
from deploytool.remote import Expand, Session, join, script
from deploytool.units import EnvFile, environment_files, instances, render_app, target_name


@dataclass(frozen=True)
class Workers:
    """An app's workers on one host, as the inventory wants them."""

    inv: Inventory
    host: str
    app: App
    group: str | None = None  # only this worker group

    @property
    def groups(self) -> list[WorkerGroup]:
        return [g for g in self.inv.groups_on(self.host, self.app) if self.group in (None, g.name)]

    @property
    def units(self) -> list[str]:
        return [u for g in self.groups for u in instances(self.app, g)]

    def pattern(self, group: WorkerGroup) -> str:
        """A glob matching the group's loaded instances (nothing matches before an install)."""
        return f"{self.app.name}-{group.name}@*.service"

    @property
    def patterns(self) -> list[str]:
        return [self.pattern(g) for g in self.groups]

    @property
    def target(self) -> str:
        return target_name(self.app)

    def rendered(self, template_dirs: Sequence[Path] = ()) -> dict[str, str]:
        return {u.name: u.content for u in render_app(self.inv, self.host, self.app, template_dirs)}

    @property
    def env_files(self) -> list[EnvFile]:
        """The groups' environment files and the app's own (for its commands: deploytool.context);
        secret content, never printed."""
        return [*environment_files(self.inv, self.host, self.app), *context.app_env_files(self.app)]

    def install_script(self, template_dirs: Sequence[Path] = ()) -> str:
        """The unit sync, run only when the host's units, enablement or environment files differ from the
        inventory's (checked first with no sudo and no systemctl: unitfiles.install)."""
        files = list(self.rendered(template_dirs).items())
        user = self.inv.hosts[self.host].user if self.app.systemd == "user" else None
        return unitfiles.install(self.app, files, self.units, self.target, self.env_files, linger=user)

    def unsupported_quiet(self) -> list[str]:
        return sorted({g.kind for g in self.groups if KINDS[g.kind].quiet is Quiet.NONE})

    def quiet_commands(self) -> list[str]:
        """Commands that make every group that can be quieted stop fetching jobs: one signal per signal
        for all the groups quieted by it; per Celery node, one read of its unit, then each queue."""
        cmds: list[str] = []
        by_signal: dict[str, list[str]] = {}
        for g in self.groups:
            kind = KINDS[g.kind]
            if g.processes and kind.quiet is Quiet.SIGNAL and kind.quiet_signal:
                by_signal.setdefault(kind.quiet_signal, []).append(self.pattern(g))
        cmds += [join(sc.kill_main(self.app, patterns, signal)) for signal, patterns in by_signal.items()]
        for g in self.groups:
            if g.processes and KINDS[g.kind].quiet is Quiet.CELERY_CONTROL:
                # In the group's own context (user, PATH, environment): the broker URL is there, and
                # `celery` is the units' celery; in the release the node runs (its working directory),
                # not `current`, which a deploy has already switched: the node's own Celery app. Only
                # while its unit is active: a stopped node fetches nothing, and Celery's remote control
                # fails (exit 69) when no node replies.
                program = context.program(self.app, g)
                cwd = Expand("$" + running.VAR)
                for i, unit in enumerate(instances(self.app, g), start=1):
                    # The node name the unit gives each instance (kinds table: -n app-group-N@host).
                    node = f"{self.app.name}-{g.name}-{i}@{self.host}"
                    cancels = [until_replied(join(context.in_context(
                        self.inv, self.host, self.app, celery_cancel_consumer(program, q.name, node), g, cwd=cwd)))
                        for q in g.queues]
                    if cancels:
                        cmds.append(running.while_active(self.app, g, unit, cancels))
        return cmds


def stop_script(w: Workers) -> str:
    """systemd sends the kind's stop signal and waits TimeoutStopSec (grace + margin) per unit; then
    jobs a stopping worker took but never ran are put back (kinds that need it)."""
    return "\n".join([join(sc.stop(w.app, w.units)), *requeues(w.inv, w.host, w.app, w.groups)])


def restart_script(w: Workers, dry: bool = False) -> str:
    """Stop (each worker drains within its grace), start, and wait until every group is ready as its
    system tells it, each unit still active with the process it started (deploytool.commands.ready),
    within the group's timeout.

    `systemctl start` returns once each unit is up (Type=notify: once Sidekiq reports ready)."""
    groups = [g for g in w.groups if g.processes]
    if dry:  # what a dry run prints: the probes' programs (and the environment they run in) by name
        return "\n".join(["# restart: stop, start, wait until every worker is ready", stop_script(w),
                          join(sc.start(w.app, [w.target, *w.units])),
                          "# then wait until each group is ready as its system tells it (docs/readiness.md): "
                          + ", ".join(f"{g.name} ({g.kind})" for g in groups)])
    # The first line names the step when it fails (deploytool.remote.script quotes it).
    return "\n".join(["# restart: stop, start, wait until every worker is ready", stop_script(w),
                      ready.prepare(w.app, groups, w.host), join(sc.start(w.app, [w.target, *w.units])),
                      ready.wait(w.app, groups, w.host)])


def recover_script(w: Workers) -> str:
    """Bring back whatever runs or should run: quiet workers are restarted (Sidekiq cannot be
    un-quieted), stopped ones started through the target; before a first install there is nothing."""
    target = join(sc.systemctl(w.app, "start", w.target))
    return "\n".join([
        join(sc.systemctl(w.app, "try-restart", *w.patterns)),
        f"if {join(sc.systemctl(w.app, 'cat', w.target))} >/dev/null 2>&1; then {target}; fi",
    ])


# The plans of the worker operations (deploytool.engine.plan), one per operation, run by deploytool.engine.runner.
# A plan with no actions does nothing (a group without processes, an app without workers).

def _one(stage: str, *commands: str, arms: tuple[str, ...] = ()) -> Plan:
    if not commands:
        return Plan(())
    return Plan((Script(tuple(Step(stage, c, arms=arms) for c in commands)),))


def start_plan(w: Workers) -> Plan:
    """Start the target and every instance; a failed start leaves nothing to put back."""
    return _one("start", join(sc.start(w.app, [w.target, *w.units]))) if w.units else Plan(())


def stop_plan(w: Workers) -> Plan:
    """Stop every instance (each within its grace), then requeue what a stopping worker took. A
    failed stop is not undone: stopping is what was asked; the report names what failed."""
    return _one("stop", stop_script(w)) if w.units else Plan(())


def quiet_plan(w: Workers) -> Plan:
    """Make every group that can be quieted stop fetching jobs; kinds without a way send nothing
    (Workers.unsupported_quiet says which). Not undone on failure: quiet is what was asked."""
    return _one("quiet", *w.quiet_commands())


def enable_plan(w: Workers) -> Plan:
    """Start at boot: the target and every instance."""
    return _one("enable", join(sc.enable(w.app, [w.target, *w.units]))) if w.units else Plan(())


def disable_plan(w: Workers) -> Plan:
    """No start at boot; running workers keep running."""
    return _one("disable", join(sc.disable(w.app, [w.target, *w.units]))) if w.units else Plan(())


def uninstall_plan(w: Workers, purge: bool = False) -> Plan:
    """Stop, disable and remove every unit of the app (its environment files too); `purge`: then its
    deploy_to as well (releases, shared/, the lock: commands.release.purge)."""
    if not purge:
        return _one("uninstall", unitfiles.remove_all(w.app))
    # In a subshell: the unit removal's early `exit 0` (no units) must not skip the purge after it.
    return _one("uninstall", f"(\n{unitfiles.remove_all(w.app)}\n)", rel.purge(w.app))


def restart_plan(w: Workers, stage: str = "restart") -> Plan:
    """Quiet where supported, then stop and start again; on failure the workers are brought back."""
    if not w.units:
        return Plan(())
    steps = [Step(stage, c, arms=("workers",)) for c in w.quiet_commands()]
    steps.append(Step(stage, restart_script(w), arms=("workers",)))
    return Plan((Script(tuple(steps), commits=True),), (Recovery("workers", recover_script(w)),))


RUNNING = "@@deploytool-running"  # a fact line: the app's worker instances active before a change
# What a dry run's plan shows for the unit sync instead of its script (which carries the environment
# files' content): the changes read from the host are listed beside the plan.
SYNC_PLAN = "sync the units: nothing if no unit file, environment file or enablement differs (checked with " \
            "no sudo and no systemctl); else write the files that differ, stop and disable surplus instances, " \
            "enable 1..N (see the changes)"


def running_units(w: Workers) -> str:
    """Shell text printing `RUNNING unit...`: the app's instances active now (for the recovery)."""
    listing = join(sc.systemctl(w.app, "list-units", "--state=active", "--plain", "--no-legend", *w.patterns))
    return f"printf '%s %s\\n' {RUNNING} \"$({listing} | awk '{{print $1}}' | tr '\\n' ' ')\""


def install_plan(w: Workers, template_dirs: Sequence[Path] = (), facts: Facts | None = None,
                 dry: bool = False) -> Plan:
    """Make the host's units match the inventory (prints `changed` when a file changed). On failure
    the wanted instances that were running before (`facts["running"]`) are started again: an install
    never leaves workers stopped that ran. Surplus instances are stopped on purpose, not restarted."""
    sync = SYNC_PLAN if dry else w.install_script(template_dirs)
    steps = [Step("install", running_units(w))] if w.units else []
    steps.append(Step("install", sync, arms=("workers",)))
    were = [u for u in (facts or {}).get("running", "").split() if u in w.units]
    recovery = (Recovery("workers", join(sc.start(w.app, were))),) if were else ()
    return Plan((Script(tuple(steps)),), recovery)


def unit_diff(current: dict[str, str], wanted: dict[str, str], env_changed: Sequence[str] = ()) -> list[str]:
    """A unified diff per unit that would change, then `<env file>: (environment file changed)`."""
    lines: list[str] = []
    for name in sorted(set(current) | set(wanted)):
        before, after = current.get(name, ""), wanted.get(name, "")
        if before != after:
            lines += difflib.unified_diff(before.splitlines(), after.splitlines(),
                                          f"{name} (on the host)" if name in current else "/dev/null",
                                          name if name in wanted else "/dev/null (removed)", lineterm="")
    lines += [f"{name}: (environment file changed)" for name in env_changed]
    return lines or ["(no unit changes)"]


def parse_instances(text: str) -> tuple[dict[str, str], list[str]]:
    """read_instances() output → (loaded instance → its active state, enabled instances)."""
    loaded: dict[str, str] = {}
    enabled: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == unitfiles.INSTANCE:
            if parts[1] == "loaded" and len(parts) >= 4:
                loaded[parts[2]] = parts[3]
            elif parts[1] == "enabled":
                enabled.append(parts[2])
    return loaded, enabled


def _instance_key(unit: str) -> tuple[str, int, str]:
    name, _, rest = unit.partition("@")
    number = rest.removesuffix(".service")
    return (name, int(number) if number.isdigit() else 0, number)


# Active states in which a worker runs (or is about to): stopping it is a change.
RUNNING_STATES = frozenset({"active", "activating", "reloading", "deactivating"})


def instance_changes(loaded: dict[str, str], enabled: Sequence[str], wanted: Sequence[str],
                     starts: bool) -> list[str]:
    """What a unit sync does to the app's instances, one line each, from what the host has: those not
    wanted are stopped and disabled; wanted ones not enabled are enabled. `starts`: the operation
    starts the wanted ones afterwards (a deploy), so those not running now would be started."""
    lines = []
    for unit in sorted(set(loaded) | set(enabled) | set(wanted), key=_instance_key):
        running = loaded.get(unit, "") in RUNNING_STATES
        is_enabled = unit in enabled
        if unit not in wanted:
            what = [w for w, yes in (("stopped", running), ("disabled", is_enabled)) if yes]
            if what:
                lines.append(f"{unit}: {'running' if running else 'not running'}, would be "
                             f"{' and '.join(what)} (not wanted)")
            continue
        what = [w for w, yes in (("enabled", not is_enabled), ("started", starts and not running)) if yes]
        if what:
            later = "" if starts or running else " (not started: workers.start or a deploy starts it)"
            lines.append(f"{unit}: would be {' and '.join(what)}{later}")
    return lines


# What starting, stopping, ... does to a wanted instance, by whether it runs and is enabled now: the
# first matching (test, verb) of the operation; none matching: nothing changes for that instance.
EFFECTS: dict[str, tuple[tuple[Callable[[bool, bool], bool], str], ...]] = {
    "start": ((lambda running, enabled: not running, "started"),),
    "stop": ((lambda running, enabled: running, "stopped"),),
    "restart": ((lambda running, enabled: running, "restarted"), (lambda running, enabled: True, "started")),
    "enable": ((lambda running, enabled: not enabled, "enabled"),),
    "disable": ((lambda running, enabled: enabled, "disabled"),),
}


def instance_effects(loaded: dict[str, str], enabled: Sequence[str], wanted: Sequence[str], op: str) -> list[str]:
    """What operation `op` (a key of EFFECTS) would do to each wanted instance, one line each."""
    lines = []
    for unit in sorted(wanted, key=_instance_key):
        running, is_enabled = loaded.get(unit, "") in RUNNING_STATES, unit in enabled
        verb = next((v for test, v in EFFECTS[op] if test(running, is_enabled)), None)
        if verb:
            lines.append(f"{unit}: would be {verb}")
    return lines or [f"(no instance would be {EFFECTS[op][0][1]})"]


def preview(session: Session, w: Workers, template_dirs: Sequence[Path] = (), starts: bool = False,
            removing: bool = False, stage: str = "preview") -> list[str]:
    """What a unit sync (`removing`: an uninstall) would change on the host, read in one round trip
    (read only): a diff per unit file, a line per environment file (never its content), a line per
    instance started, stopped, enabled or disabled."""
    env_files = [] if removing else w.env_files
    out = session.run(unitfiles.read_instances(w.app, w.target) + "\n"
                      + unitfiles.read_all(w.app, env_files), stage).stdout
    files, env_changed = unitfiles.parse_read_all(out)
    loaded, enabled = parse_instances(out.split(unitfiles.SEPARATOR, 1)[0])
    if removing:
        return [f"{name}: would be removed" for name in sorted(files)] + \
            [f"{name}: (environment file) would be removed" for name in env_changed] + \
            instance_changes(loaded, enabled, [], starts=False)
    return unit_diff(files, w.rendered(template_dirs), env_changed) + \
        instance_changes(loaded, enabled, w.units, starts)


def effects(session: Session, w: Workers, op: str, stage: str = "preview") -> list[str]:
    """What `op` would do to the wanted instances, from their states on the host (read only)."""
    loaded, enabled = parse_instances(session.run(unitfiles.read_instances(w.app, w.target), stage).stdout)
    return instance_effects(loaded, enabled, w.units, op)


@dataclass(frozen=True)
class UnitStatus:
    host: str
    unit: str
    load: str
    active: str
    sub: str
    enabled: str
    since: str
    restarts: int
    main_pid: int
    memory: int | None
    # As the worker system records the process (Sidekiq's process hash): taking no new jobs, and jobs
    # running now. None: the kind keeps no such record, or it could not be read.
    quiet: bool | None = None
    busy: int | None = None
    # The release its main process runs (its working directory) and the one `current` points to; None
    # when it cannot be told (no process, one of another user).
    release: str | None = None
    current: str | None = None

    @property
    def stale(self) -> bool:
        """It runs another release than the one `current` points to."""
        return self.release is not None and self.current is not None and self.release != self.current

    @property
    def ok(self) -> bool:
        return self.active == "active" and not self.stale


def status(session: Session, w: Workers, stage: str = "status") -> tuple[list[UnitStatus], str]:
    """Each unit's state, the release its process runs; and the host's record of the last deploy."""
    units = [*w.units, w.target] if w.units and w.group is None else w.units
    if not units:
        return [], ""
    out = session.run(script(join(sc.show(w.app, units)), f"echo {SEPARATOR}",
                             rel.running_releases(w.app, w.units), rel.last_run(w.app)), stage).stdout
    shown, _, facts = out.partition(SEPARATOR + "\n")
    found = [_parse_show(session.host.name, block) for block in shown.strip().split("\n\n") if block.strip()]
    current, cwd, last = parse_releases(facts)
    readings = collect.read_here(session, w.inv, w.app, w.groups)
    return [with_release(_with_process(u, readings), current, cwd.get(u.unit)) for u in found], last


SEPARATOR = "@@deploytool-end-of-units"


def parse_releases(text: str) -> tuple[str, dict[str, str], str]:
    """(`current`'s release directory, unit → its process's working directory, the last-run record)."""
    current, last, cwd = "", "", {}
    for line in text.splitlines():
        marker, _, rest = line.strip().partition(" ")
        if marker == rel.CURRENT:
            current = rest.strip()
        elif marker == rel.LAST:
            last = rest.strip()
        elif marker == rel.CWD:
            unit, _, path = rest.partition(" ")
            cwd[unit] = path.strip()
    return current, cwd, last


def with_release(u: UnitStatus, current: str, cwd: str | None) -> UnitStatus:
    """The release the unit's process runs: the directory under releases/ it works in (a release that
    was removed since reads `NAME (deleted)`)."""
    if not cwd or not current or not u.main_pid:
        return u
    releases = current.rsplit("/", 1)[0] + "/"
    if not cwd.startswith(releases):
        return u  # a template that starts the workers elsewhere: not for us to judge
    return replace(u, release=cwd.removeprefix(releases), current=current.rsplit("/", 1)[1])


def unit_states(session: Session, w: Workers, stage: str = "status") -> list[UnitStatus]:
    """Each worker unit's state as systemd tells it (active, restarts, main PID), read in one round trip."""
    if not w.units:
        return []
    out = session.run(join(sc.show(w.app, w.units)), stage).stdout
    return [_parse_show(session.host.name, block) for block in out.strip().split("\n\n") if block.strip()]


def _with_process(u: UnitStatus, readings: Sequence[Reading]) -> UnitStatus:
    """The unit's worker process as its system records it, seen from this host: by the unit of its
    cgroup, else by the `-g app-group-N` tag deploytool passes (preferring the unit's main PID)."""
    name, _, instance = u.unit.removesuffix(".service").partition("@")
    tag = f"{name}-{instance}"
    # A process's unit is known only when the probe saw it on its own host.
    mine = [p for r in readings for p in r.workers
            if p.unit == u.unit or (p.unit is None and p.hostname == r.hostname and p.tag == tag)]
    if not instance or not mine:
        return u
    p = next((p for p in mine if p.pid == u.main_pid), mine[0])
    return replace(u, quiet=p.quiet, busy=p.busy)


def _parse_show(host: str, block: str) -> UnitStatus:
    props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)

    def num(key: str) -> int:
        value = props.get(key, "")
        return int(value) if value.isdigit() else 0

    memory = props.get("MemoryCurrent", "")
    return UnitStatus(
        host=host,
        unit=props.get("Id", "?"),
        load=props.get("LoadState", ""),
        active=props.get("ActiveState", ""),
        sub=props.get("SubState", ""),
        enabled=props.get("UnitFileState", ""),
        since=props.get("ActiveEnterTimestamp", ""),
        restarts=num("NRestarts"),
        main_pid=num("MainPID"),
        memory=int(memory) if memory.isdigit() else None,
    )
