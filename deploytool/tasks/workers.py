"""`fab workers.*`: render, install and manage the worker units of each app on each host."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.errors import HostError, InputError
from deploytool.project import project_dir, project_templates
from deploytool.report import HostReport, Reporter, json_text
from deploytool.tasks.options import Target, command, load, select_targets

# The worker machinery (inventory model, units, SSH) is imported in the task bodies: `fab --list`
# and every other task do not pay for it.
if TYPE_CHECKING:
    from deploytool.engine.plan import Facts, Plan
    from deploytool.engine.runner import Job, Rollout
    from deploytool.inventory import Inventory
    from deploytool.operations import workers as ops
    from deploytool.operations.workers import Workers
    from deploytool.remote import Session
    from deploytool.units import EnvFile, UnitFile

ROLLING_HELP = {"batch": "hosts at a time: N or P% (default: one host at a time)",
                "max_fail": "hosts that may fail before the rest are left alone (default 0)"}


def check_group(inv: Inventory, targets: list[Target], group: str | None) -> None:
    if group and not any(group in t.app.workers for t in targets):
        raise InputError(f"{inv.path}: --group {group}: no such worker group in the selected apps")


def perform(c: Context, inventory: str | None, host: str | None, app: str | None, job: Callable[[Workers], Job],
            *, task: str, json: bool, dry_run: bool, group: str | None = None, rollout: Rollout | None = None,
            notes: Sequence[str] = (), verbose: bool = False) -> None:
    """Build each (host, app)'s job with `job`, run them with the engine (or print their plans), report;
    `notes` (filled while the jobs are built) are printed before the summary. Exit 1 if a host failed."""
    from deploytool.engine import runner as engine
    from deploytool.operations.workers import Workers

    inv = load(c, inventory)
    targets = select_targets(inv, host, app)
    check_group(inv, targets, group)
    jobs = [job(Workers(inv, t.host, t.app, group)) for t in targets]
    reports = engine.perform(inv, jobs, Reporter(quiet=json), task, json=json, dry_run=dry_run,
                             rollout=rollout or engine.Rollout(), notes=notes, verbose=verbose)
    if any(r.status != "ok" for r in reports):
        raise Exit(code=1)


@command(out="directory to write the units to (HOST/UNIT with several hosts); default: print",
         show_secrets="show the environment files' secret values too (default: ***)")
def render(
    c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
    out: str | None = None, show_secrets: bool = False,
) -> None:
    """Render the worker units and environment files for hosts without connecting to them."""
    from deploytool.operations.workers import Workers
    from deploytool.redact import inventory_secrets
    from deploytool.units import render_app

    # --show-secrets prints them on purpose: then they are not redacted from the output.
    inv = load(c, inventory, redacting=not show_secrets)
    secrets = inventory_secrets(inv)
    targets = select_targets(inv, host, app)
    many_hosts = len({t.host for t in targets}) > 1
    for t in targets:
        units = render_app(inv, t.host, t.app, template_dirs=project_templates(project_dir(c.config)))
        w = Workers(inv, t.host, t.app)
        env_files = [e if show_secrets else redacted(e, secrets) for e in w.env_files]
        if out is None:
            for unit in units:
                print(f"# --- {t.host}: {unit.name}\n{unit.content}")
            for env in env_files:
                print(f"# --- {t.host}: {env.path}\n{env.content}")
            continue
        directory = Path(out) / t.host if many_hosts else Path(out)
        try:
            write_unit_dir(directory, units, w.target, w.units)
            for env in env_files:
                write_private(directory / f"{t.app.name}-{env.name}", env.content)
        except OSError as e:
            raise InputError(f"--out {out}: cannot write: {e.strerror}") from None
        print(f"{t.host}: {t.app.name}: wrote {len(units)} units, {len(w.units)} enabled instances and "
              f"{len(env_files)} environment files to {directory}")


def redacted(env: EnvFile, secrets: Sequence[str]) -> EnvFile:
    """The environment file with its secret values shown as *** (deploytool.redact: `secrets:`, secret
    names, URL passwords); ordinary values as they are."""
    from deploytool.redact import redact
    from deploytool.units import EnvFile

    return EnvFile(env.path, redact(env.content, secrets))


def write_private(path: Path, content: str) -> None:
    # Environment files hold secrets: 0600 from the start, never briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(content)


def write_unit_dir(directory: Path, units: list[UnitFile], target: str, enabled: list[str]) -> None:
    """The units laid out as `systemctl enable` would: instances 1..N as links in the target's .wants/."""
    directory.mkdir(parents=True, exist_ok=True)
    for unit in units:
        (directory / unit.name).write_text(unit.content)
    wants = directory / f"{target}.wants"
    if wants.exists():
        for old in wants.iterdir():
            old.unlink()
    wants.mkdir(exist_ok=True)
    for instance in enabled:
        template = instance.split("@", 1)[0] + "@.service"
        (wants / instance).symlink_to(f"../{template}")


@command()
def install(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
            dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Upload the units, enable instances 1..N and the target (start at boot); remove surplus ones."""
    from deploytool.engine.runner import Job, Preview
    from deploytool.operations import workers as ops

    templates = project_templates(project_dir(c.config))

    def job(w: Workers) -> Job:
        def note(facts: Facts, r: HostReport) -> None:
            if "output:install" in facts:
                r.details["units_changed"] = "changed" in facts["output:install"].split()

        return Job(w.host, w.app, lambda facts: ops.install_plan(w, templates, facts), note=note,
                   preview=lambda s: Preview(changes=ops.preview(s, w, templates)),
                   dry_plan=lambda seen: ops.install_plan(w, templates, seen.facts, dry=True))
    perform(c, inventory, host, app, job, task="workers.install", json=json, dry_run=dry_run, verbose=verbose)


@command(purge="also remove the app's deploy_to (releases, shared/ with its linked files, current, revisions.log, "
               "the lock): the app is then gone from the host")
def uninstall(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
              purge: bool = False, dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Stop, disable and remove all of an app's worker units and environment files (--purge: its deploy_to)."""
    from deploytool.engine.runner import Job, Preview
    from deploytool.operations import workers as ops

    def job(w: Workers) -> Job:
        gone = [f"{w.app.deploy_to}: would be removed, with releases, shared/ and the lock (--purge)"] if purge else []
        return Job(w.host, w.app, lambda _: ops.uninstall_plan(w, purge),
                   preview=lambda s: Preview(changes=ops.preview(s, w, removing=True) + gone))
    perform(c, inventory, host, app, job, task="workers.uninstall", json=json, dry_run=dry_run, verbose=verbose)


def _operation(op: str, build: Callable[[Workers], Plan]) -> Callable[[Workers], Job]:
    """A worker operation whose dry run shows what it does to each instance (workers.EFFECTS)."""
    from deploytool.engine.runner import Job, Preview
    from deploytool.operations import workers as ops

    return lambda w: Job(w.host, w.app, lambda _: build(w), preview=lambda s: Preview(changes=ops.effects(s, w, op)))


@command()
def enable(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
           dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Make the workers start at boot."""
    from deploytool.operations import workers as ops

    perform(c, inventory, host, app, _operation("enable", ops.enable_plan), task="workers.enable", json=json,
            dry_run=dry_run, verbose=verbose)


@command()
def disable(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
            dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Stop the workers from starting at boot (running ones keep running)."""
    from deploytool.operations import workers as ops

    perform(c, inventory, host, app, _operation("disable", ops.disable_plan), task="workers.disable", json=json,
            dry_run=dry_run, verbose=verbose)


@command()
def start(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
          group: str | None = None, dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Start the workers."""
    from deploytool.operations import workers as ops

    perform(c, inventory, host, app, _operation("start", ops.start_plan), task="workers.start", json=json,
            dry_run=dry_run, verbose=verbose, group=group)


@command()
def stop(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
         group: str | None = None, dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Stop the workers; running jobs get the kind's grace to finish."""
    from deploytool.operations import workers as ops

    perform(c, inventory, host, app, _operation("stop", ops.stop_plan), task="workers.stop", json=json,
            dry_run=dry_run, verbose=verbose, group=group)


def quiet_shortfall(quieted: Sequence[str], unsupported: Sequence[str], strict: bool) -> str | None:
    """Why a quiet failed on one host, or None. A kind without a quiet mechanism (RQ, Dramatiq, ...) is no
    failure: nothing went wrong, there is nothing to ask of it (a note says so); with --strict it is."""
    if not unsupported or not strict:
        return None
    why = f"quiet: not supported by {', '.join(unsupported)} (no per-worker quiet mechanism)"
    return f"{why}; the other kinds were quieted" if quieted else f"{why}; nothing was quieted"


@command(strict="exit 1 if a selected kind has no quiet mechanism (default: a note, exit 0)")
def quiet(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
          group: str | None = None, strict: bool = False, dry_run: bool = False, verbose: bool = False,
          json: bool = False) -> None:
    """Make the workers stop fetching new jobs, each kind its own way; kinds without a way are reported."""
    from deploytool.engine.runner import Job, Preview
    from deploytool.kinds import KINDS
    from deploytool.operations import workers as ops

    notes: list[str] = []

    def job(w: Workers) -> Job:
        unsupported = w.unsupported_quiet()
        quieted = sorted({g.kind for g in w.groups if KINDS[g.kind].can_quiet})
        shortfall = quiet_shortfall(quieted, unsupported, strict)
        if unsupported and not shortfall:
            notes.append(f"{w.host}: {w.app.name}: quiet not supported by {', '.join(unsupported)}: those "
                         "workers keep fetching jobs (workers.stop stops them, each finishing its job); "
                         + (f"quieted: {', '.join(quieted)}" if quieted else "nothing else to quiet"))

        def note(facts: Facts, r: HostReport) -> None:
            r.details.update(quieted=quieted, quiet_not_supported=unsupported)

        def finish(r: HostReport) -> None:
            # After the kinds that can be quieted were: what is asked of them happens either way.
            if shortfall and r.status == "ok":
                r.status, r.error = "failed", f"{w.host}: {shortfall}"

        said = [f"{', '.join(unsupported)}: not quieted (quiet not supported): those workers keep fetching jobs"] \
            if unsupported else []
        said += [f"would fail: {shortfall}"] if shortfall else []
        return Job(w.host, w.app, lambda _: ops.quiet_plan(w), note=note, finish=finish,
                   preview=lambda _: Preview(changes=said))
    perform(c, inventory, host, app, job, task="workers.quiet", json=json, dry_run=dry_run, verbose=verbose,
            group=group, notes=notes)


@command(**ROLLING_HELP)
def restart(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
            group: str | None = None, batch: str | None = None, max_fail: int = 0, timeout: float | None = None,
            dry_run: bool = False, verbose: bool = False, json: bool = False) -> None:
    """Quiet, stop and start the workers, rolling host by host; on failure they are brought back."""
    from deploytool.engine.runner import Rollout
    from deploytool.operations import workers as ops

    perform(c, inventory, host, app, _operation("restart", ops.restart_plan), task="workers.restart", json=json,
            dry_run=dry_run, verbose=verbose, group=group,
            rollout=Rollout(batch=batch, default_batch=1, max_fail=max_fail, timeout=timeout))


@command()
def status(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
           group: str | None = None, json: bool = False) -> None:
    """Show each worker unit's state; exit 1 unless every expected unit is active."""
    from deploytool import task_reports
    from deploytool.engine.lock import last_run_note
    from deploytool.engine.runner import on_hosts
    from deploytool.operations import workers as ops
    from deploytool.redact import redact

    inv = load(c, inventory)
    targets = select_targets(inv, host, app)
    check_group(inv, targets, group)
    units: list[ops.UnitStatus] = []
    notes: list[str] = []

    def op(s: Session, t: Target, r: HostReport) -> None:
        w = ops.Workers(inv, t.host, t.app, group)
        found, last = ops.status(s, w)
        units.extend(found)
        note = last_run_note(t.host, t.app.name, last)
        if note:
            r.details["last_deploy"] = note
            notes.append(note)
        problems = []
        down = [u.unit for u in found if u.active != "active"]
        if down:
            problems.append(f"{len(down)} unit(s) not active: {', '.join(down)}")
        stale = [f"{u.unit} runs release {u.release}" for u in found if u.stale]
        if stale:
            problems.append(f"{len(stale)} worker(s) not on the release current points to "
                            f"({found[0].current if found else '?'}): {', '.join(stale)}")
        if problems:
            raise HostError(f"{w.host}: {'; '.join(problems)}")
    reports = on_hosts(inv, targets, op, Reporter(quiet=True), "status")
    if json:
        print(json_text(task_reports.workers_status(reports, [asdict(u) for u in units])))
    else:
        print(status_table(units))
        for note in notes:
            print(redact(f"note: {note}"))
        for r in reports:
            if r.error:
                print(redact(f"error: {r.error}"))
    if any(r.status != "ok" for r in reports):
        raise Exit(code=1)


def status_table(units: list[ops.UnitStatus]) -> str:
    rows = [("HOST", "UNIT", "ACTIVE", "SUB", "BOOT", "SINCE", "RESTARTS", "PID", "MEMORY", "QUIET", "BUSY",
             "RELEASE")]
    for u in units:
        mem = f"{u.memory / 2**20:.1f}M" if u.memory is not None else "-"
        quiet = "-" if u.quiet is None else "yes" if u.quiet else "no"
        release = "-" if u.release is None else f"{u.release} (current: {u.current})" if u.stale else u.release
        rows.append((u.host, u.unit, u.active, u.sub, u.enabled, u.since or "-", str(u.restarts),
                     str(u.main_pid or "-"), mem, quiet, "-" if u.busy is None else str(u.busy), release))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


@command(lines="journal lines to show (default 100)", since="e.g. '10 min ago'",
         follow="keep printing new entries")
def logs(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
         group: str | None = None, lines: int = 100, since: str | None = None, follow: bool = False) -> None:
    """Show the workers' journal."""
    from deploytool.commands import systemctl as sc
    from deploytool.operations.workers import Workers
    from deploytool.remote import connect, join

    inv = load(c, inventory)
    targets = select_targets(inv, host, app)
    for t in targets:
        w = Workers(inv, t.host, t.app)
        groups = [g for g in w.groups if group in (None, g.name)]
        if group and not groups:
            raise InputError(f"{inv.path}: host {t.host}: app {t.app.name}: --group {group}: no such group")
        units = [f"{t.app.name}-{g.name}@*.service" for g in groups]
        session = connect(inv.hosts[t.host])
        try:
            # Streamed as it comes, so --follow works.
            session.stream(join(sc.logs(t.app, units, lines, since, follow)))
        finally:
            session.close()


workers = Collection(
    "workers", render, install, uninstall, enable, disable, start, stop, quiet, restart, status, logs
)
