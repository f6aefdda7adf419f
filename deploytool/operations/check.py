"""`fab check`: is a host ready for a deploy of an app? Read only, every problem listed.

What is checked is derived from what deploytool would send: the sudo rights are the programs the
builders run with `sudo -n`, the remote programs are those the builders call, so a new builder is
checked without anyone remembering to add it here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploytool import context
from deploytool.commands import check as probes
from deploytool.commands import config as config_cmd
from deploytool.commands import release as rel
from deploytool.commands import systemctl as sc
from deploytool.commands import unitfiles
from deploytool.engine import host_runner
from deploytool.engine.lock import Holder
from deploytool.engine.plan import Plan, Script, Step
from deploytool.inventory import App, Inventory
from deploytool.operations import workers as ops
from deploytool.operations.deploy import Deploy
from deploytool.operations.shared_files import shared_file
from deploytool.operations.workers import Workers
from deploytool.remote import Session, join, script
from deploytool.source import Revision

# The check plan's stages: one round trip, its output read from the first stage's.
PROBE, PROGRAMS, UNITS, WORKERS = "probe", "programs", "units", "workers"
OUTPUT = f"output:{PROBE}"

# Programs a host may be asked to run; those that occur as a command word in the builders' output are
# the ones checked (git only for the git strategy, loginctl only for user-mode units, ...).
VOCABULARY = (
    "git", "tar", "gzip", "flock", "systemd-run", "base64", "cmp", "sha256sum", "mktemp", "stat", "logger",
    "awk", "sed", "grep", "cut", "sort", "tail", "head", "date", "expr", "readlink", "basename", "dirname",
    "ln", "mv", "rm", "mkdir", "chmod", "chown", "tee", "ls", "cat", "du", "df", "sudo", "systemctl",
    "journalctl", "loginctl", "python3",
)
# Programs a builder needs without naming them: `tar -z` runs gzip.
IMPLIED = {"tar -xzf": "gzip"}
SUDO = re.compile(r"\bsudo -n (?:-- )?([\w./-]+)")


@dataclass(frozen=True)
class Finding:
    check: str  # host key, sudo, program, deploy_to, linked file, disk, lock, units, worker program
    ok: bool
    detail: str
    note: bool = False  # informational only: never a problem (units a deploy will sync anyway)


def host_commands(inv: Inventory, host: str, app: App, template_dirs: Sequence[Path] = ()) -> list[str]:
    """Shell text of everything deploytool may send for `app` to `host`: a deploy's phases and its
    recovery, the worker tasks, and `config.upload` of every linked file."""
    w = Workers(inv, host, app)
    release = "20000101000000"
    d = Deploy(inv, host, app, Revision(app.source.revision, "0" * 40), release, None, template_dirs,
               once_host=True)
    holder = Holder.me("", release)
    plan = d.build_plan({}, holder)
    texts = [step.command for action in plan.actions if isinstance(action, Script) for step in action.steps]
    texts += [r.command for r in plan.recovery]
    texts.append(host_runner.BOOT)
    texts += [
        rel.switch_back(app, release, "19990101000000"), ops.recover_script(w), ops.restart_script(w),
        unitfiles.remove_all(app), unitfiles.read_all(app), join(sc.logs(app, w.units, 10, None, False)),
        join(sc.enable(app, w.units)), join(sc.disable(app, w.units)), join(sc.show(app, w.units)),
        join(sc.enable_linger(inv.hosts[host].user)) if app.systemd == "user" else "",
    ]
    for name in app.linked_files:
        f = shared_file(inv, host, app, name)
        texts += [config_cmd.state(f), config_cmd.make_temp(f), script(*config_cmd.install(f, "/tmp/x"))]
    return texts


def sudo_programs(texts: Sequence[str]) -> list[str]:
    return sorted({m for t in texts for m in SUDO.findall(t)})


def remote_programs(texts: Sequence[str]) -> list[str]:
    text = "\n".join(texts)
    used = {p for p in VOCABULARY if re.search(rf"(?<![\w./-]){re.escape(p)}(?![\w.-])", text)}
    used |= {program for marker, program in IMPLIED.items() if marker in text}
    return sorted(used)


def release_kb(archive_bytes: int | None, current_kb: int) -> int:
    """The size of a release: that of the current one (or of the archive on a first deploy)."""
    return max(current_kb, -(-(archive_bytes or 0) // 1024))


def needed_kb(archive_bytes: int | None, current_kb: int) -> int:
    """Room a deploy needs under deploy_to: the uploaded archive plus the unpacked release."""
    return -(-(archive_bytes or 0) // 1024) + release_kb(archive_bytes, current_kb)


def _kib(kb: int) -> str:
    if kb < 1024:
        return f"{kb} KiB"
    return f"{kb / 1024:.1f} MiB" if kb < 1024 * 1024 else f"{kb / 1024 / 1024:.1f} GiB"


def findings(rows: list[tuple[str, str, bool, list[str]]], app: App, archive_bytes: int | None,
             user: str) -> list[Finding]:
    """The probe lines, worded for the operator: each problem says what to do."""
    out: list[Finding] = []
    for kind, name, ok, detail in rows:
        if kind == "sudo":
            out.append(Finding("sudo", ok, f"sudo -n {name}" + ("" if ok else
                               f": not allowed for {user} without a password (deploytool runs it)")))
        elif kind == "program":
            out.append(Finding("program", ok, name + ("" if ok else ": not found on the host")))
        elif kind == "writable":
            where = app.deploy_to if name == app.deploy_to else f"{name} (to create {app.deploy_to})"
            out.append(Finding("deploy_to", ok, f"{where}: " + ("writable" if ok else f"not writable by {user}")))
        elif kind == "linked":
            out.append(Finding("linked file", ok, f"{app.shared_path}/{name}" + (
                "" if ok else f": missing; upload it: {config_cmd.invocation(app, name)}")))
        elif kind == "lock":
            holder = Holder.parse(" ".join(detail))
            who = holder.describe() if holder else "a holder that left no record"
            out.append(Finding("lock", ok, "not held by another deploy" if ok else
                               f"{app.name} is being deployed now by {who}: a deploy would be refused"))
        elif kind == "disk":
            free, size = (int(x) if x.isdigit() else 0 for x in [*detail, "0", "0"][:2])
            need = needed_kb(archive_bytes, size)
            enough = free >= need
            out.append(Finding("disk", enough, f"{_kib(free)} free under {name}, a deploy needs about "
                                               f"{_kib(need)}" + ("" if enough else ": not enough")))
            two = 2 * release_kb(archive_bytes, size)
            if enough and free < two:
                # Enough for this deploy, but the next one may fill the disk half way (cleanup runs last).
                out.append(Finding("disk", False, f"warning: {_kib(free)} free under {name} is below two "
                                                  f"releases ({_kib(two)}): a later deploy may run out of space",
                                   note=True))
    return out


def readiness_steps(inv: Inventory, host: str, app: App, template_dirs: Sequence[Path] = ()) -> list[Step]:
    """The read-only probes that say whether a deploy of `app` on `host` would get through: sudo rights,
    programs, deploy_to, linked files, disk, the deploy lock; each worker group's program resolved in
    its runtime context (one inside the release only once there is a release)."""
    texts = host_commands(inv, host, app, template_dirs)
    # The check's own probes (df, du, dirname, flock) and the program lookup are needed too.
    texts += [*probes.writable(app), *probes.disk(app), *probes.lock(app), context.resolve_programs(inv, host, app)]
    probe = probes.probe(app, sudo_programs(texts), remote_programs(texts))

    def resolve(skip_release: bool) -> str:
        return context.resolve_programs(inv, host, app, skip_release=skip_release, marker=probes.PROGRAM)

    return [Step(PROBE, probe), Step(PROGRAMS, probes.if_released(app, resolve(False), resolve(True)))]


def check_plan(inv: Inventory, host: str, app: App, template_dirs: Sequence[Path] = ()) -> Plan:
    """The check of `app` on `host`: read only, one round trip: the readiness probes, then the app's
    installed units and whether its environment files differ (never their content)."""
    w = Workers(inv, host, app)
    return Plan((Script((*readiness_steps(inv, host, app, template_dirs),
                         Step(UNITS, unitfiles.read_all(app, w.env_files)),
                         Step(WORKERS, rel.running_releases(app, w.units)))),))


def readiness(output: str, inv: Inventory, host: str, app: App, archive_bytes: int | None) -> list[Finding]:
    """The findings of the readiness probes, from what they printed."""
    rows = probes.parse(output)
    released = any(kind == "current" and ok for kind, _, ok, _ in rows)
    return [*findings(rows, app, archive_bytes, inv.hosts[host].user),
            *worker_programs(context.parse_programs(output, probes.PROGRAM), inv, host, app, released)]


def check_findings(output: str, inv: Inventory, host: str, app: App, template_dirs: Sequence[Path],
                   archive_bytes: int | None) -> list[Finding]:
    """The findings, from what the check plan's round trip printed."""
    return [Finding("host key", True, "known (strict checking)"),
            *readiness(output, inv, host, app, archive_bytes),
            units_finding(output, Workers(inv, host, app), template_dirs),
            *releases_finding(output)]


def releases_finding(output: str) -> list[Finding]:
    """Whether every running worker runs the release `current` points to (a deploy that was cut off
    before its restart, a restart that failed, could leave them on another)."""
    current, cwd, _ = ops.parse_releases(output)
    if not current:
        return []
    releases = current.rsplit("/", 1)[0] + "/"
    name = current.rsplit("/", 1)[1]
    stale = sorted(f"{unit} runs release {path.removeprefix(releases)}" for unit, path in cwd.items()
                   if path.startswith(releases) and path != current)
    if stale:
        return [Finding("workers", False, f"not on the release current points to ({name}): {', '.join(stale)}")]
    running = sum(1 for path in cwd.values() if path)
    return [Finding("workers", True, f"{running} running worker(s) on the release current points to ({name})")]


def would_fail(session: Session, inv: Inventory, host: str, app: App, template_dirs: Sequence[Path],
               archive_bytes: int | None) -> list[str]:
    """A deploy's dry run: the readiness probes run on the host (read only, one round trip); each problem
    that would make the real deploy fail, worded as `fab check` words it."""
    text = "\n".join(step.command for step in readiness_steps(inv, host, app, template_dirs))
    output = session.run(text, "check").stdout
    return [f"{f.check}: {f.detail}" for f in problems(readiness(output, inv, host, app, archive_bytes))]


def units_finding(output: str, w: Workers, template_dirs: Sequence[Path]) -> Finding:
    """Units as a deploy's dry run compares them (deploytool.operations.workers.unit_diff); a note, since a deploy
    syncs them."""
    files, env_changed = unitfiles.parse_read_all(output)
    if not files and w.units:
        return Finding("units", True, "not installed yet (a deploy installs them)", note=True)
    diff = ops.unit_diff(files, w.rendered(template_dirs), env_changed)
    if diff == ["(no unit changes)"]:
        return Finding("units", True, "installed units match the inventory", note=True)
    names = sorted({ln[4:].split(" ")[0] for ln in diff if ln.startswith(("+++ ", "--- "))} - {"/dev/null"})
    names += [ln.split(":")[0] for ln in diff if ln.endswith("(environment file changed)")]
    return Finding("units", False, f"differ from the inventory (a deploy syncs them): {', '.join(names)}",
                   note=True)


def worker_programs(found: dict[str, str | None], inv: Inventory, host: str, app: App,
                    released: bool) -> list[Finding]:
    """Per worker group, the file its program resolves to in the group's runtime context
    (deploytool.context: the units' user, PATH, environment files); a problem where it is nothing.
    Before a first deploy a program inside the release cannot be looked at yet: that is a note."""
    out = []
    for g in inv.groups_on(host, app):
        program = context.program(app, g)[0]
        path = found.get(g.name, "")
        if g.name not in found:
            out.append(Finding("worker program", True, f"{g.name}: {program}: in the release, not deployed yet",
                               note=True))
        elif path is None:
            out.append(Finding("worker program", False, f"{g.name}: {program}: resolves to nothing in the "
                                                        "group's runtime context (docs/runtime.md)"))
        else:
            out.append(Finding("worker program", True, f"{g.name}: {program} -> {path}"))
    return out


def problems(found: Sequence[Finding]) -> list[Finding]:
    return [f for f in found if not f.ok and not f.note]


def lock_held(session: Session, app: App) -> list[str]:
    """A rollback's dry run: the deploy lock probe alone (read only); the problem if a deploy holds it."""
    output = session.run("\n".join(probes.lock(app)), "check").stdout
    return [f"{f.check}: {f.detail}" for f in problems(findings(probes.parse(output), app, None, ""))]
