"""`fab config.upload`: put a linked file (an env file, a credentials file) into shared/ on every host of
an app, without raw ssh. Prints per host only whether it changed, never the content."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.errors import InputError
from deploytool.report import HostReport, Reporter, json_text
from deploytool.tasks.options import Target, command, load, select_targets

if TYPE_CHECKING:  # the inventory model and SSH are imported by the task body, not by `fab --list`
    from deploytool.commands.config import SharedFile
    from deploytool.engine.plan import Plan
    from deploytool.inventory import Inventory
    from deploytool.operations.shared_files import Content
    from deploytool.stale_workers import Seen


def read_content(source: str, workdir: Path) -> Content:
    """`-` reads standard input (a CI secret piped in) into a private file in `workdir`; anything else is
    a path on this machine."""
    from deploytool.operations.shared_files import Content

    try:
        if source == "-":
            path = workdir / "stdin"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(sys.stdin.buffer.read())
            return Content.of(path)
        return Content.of(Path(source))
    except OSError as e:
        raise InputError(f"--from {source}: cannot read: {e.strerror}") from None


def one_app(targets: list[Target], inventory: Path) -> list[Target]:
    apps = sorted({t.app.name for t in targets})
    if len(apps) > 1:
        raise InputError(f"{inventory}: the selected hosts run several apps ({', '.join(apps)}): "
                         "name one with --app")
    return targets


def upload_all(inv: Inventory, files: dict[str, SharedFile], content: Content, dry_run: bool,
               what: str = "") -> list[HostReport]:
    """Each host's upload plan (a dry run: only its read-only compare) run by the one executor; a dry
    run's reports hold the plan it would run (`what`: the file it would send)."""
    from deploytool.engine import runner as engine
    from deploytool.engine.plan import Facts
    from deploytool.engine.runner import plan_data
    from deploytool.operations import shared_files

    def job(h: str, f: SharedFile) -> engine.Job:
        seen: list[Facts] = [{}]

        def build(facts: Facts) -> Plan:
            seen[0] = facts
            return shared_files.compare_plan(f) if dry_run else shared_files.upload_plan(f, content, facts)

        def finish(report: HostReport) -> None:
            if report.status == "ok":
                report.details["result"] = shared_files.outcome(f, content, seen[0], dry_run)
            if dry_run:
                report.details.update(plan_data(shared_files.upload_plan(f, None, {}, what=what)))

        return engine.Job(h, f.app, build, finish=finish)

    # A dry run runs the read-only compare plan: the hosts are read, as every dry run reads them.
    return engine.run(inv, [job(h, f) for h, f in files.items()], Reporter(quiet=True))


def source_name(source: str) -> str:
    return "standard input" if source == "-" else source


def plan_lines(files: dict[str, SharedFile], source: str, verbose: bool = True) -> list[str]:
    """Each host's stages with their commands (deploytool.engine.plan.describe; without `verbose` the stages by
    name only); the content is never in them."""
    from deploytool.engine.runner import plan_data
    from deploytool.operations import shared_files

    lines = ["dry run: hosts are only read (the compare stage); a changed file would be sent as below"]
    for h, f in files.items():
        data = plan_data(shared_files.upload_plan(f, None, {}, what=source_name(source)))
        lines.append(f"{h}: {f.app.name}: {f.path}")
        if not verbose:
            lines.append(f"  stages: {', '.join(s['stage'] for s in data['plan'])}  (--verbose: their commands)")
        for stage in data["plan"] if verbose else []:
            lines.append(f"  [{stage['stage']}]")
            lines += [f"    {ln}" for c in stage["commands"] for ln in c.splitlines()]
        lines.append(f"  [on failure] {', '.join(data['on_failure'])}")
    return lines


def read_workers(inv: Inventory, targets: list[Target], paths: dict[str, str]) -> dict[str, Seen | None]:
    """Per host, the app's running workers and those of them whose units load the file (`paths`: its path
    per host) and that started before it last changed (deploytool.stale_workers; read only); None where
    the host could not be read."""
    from deploytool import stale_workers
    from deploytool.engine import runner as engine
    from deploytool.operations.workers import Workers
    from deploytool.remote import Session

    found: dict[str, Seen | None] = {t.host: None for t in targets}

    def op(session: Session, t: Target, r: HostReport) -> None:
        path, units = paths[t.host], Workers(inv, t.host, t.app).units
        output = session.run(stale_workers.read_command(t.app, path, units), "workers").stdout
        found[t.host] = stale_workers.parse(output, stale_workers.wanted_units(inv, t.host, t.app, path))

    engine.on_hosts(inv, targets, op, Reporter(quiet=True), None)
    return found


def restart_workers(inv: Inventory, targets: list[Target], json: bool) -> list[HostReport]:
    """The workers of `targets` restarted as `fab workers.restart` does: rolling, one host at a time,
    each host's units active before the next; on failure they are started again."""
    from deploytool.engine import runner as engine
    from deploytool.operations import workers as ops
    from deploytool.operations.workers import Workers

    def job(t: Target) -> engine.Job:
        w = Workers(inv, t.host, t.app)
        return engine.Job(t.host, t.app, lambda _: ops.restart_plan(w))

    return engine.run(inv, [job(t) for t in targets], Reporter(quiet=json), engine.Rollout(default_batch=1))


def effect_lines(r: HostReport) -> list[str]:
    """What the upload means for the workers of one host, for the text output."""
    if r.details.get("restarted"):
        return [f"  workers restarted (rolling): {', '.join(r.details['restarted'])}"]
    stale = r.details.get("stale_workers")
    if stale:
        return [f"  still running with the old file (their units load it at start): {', '.join(stale)}; "
                f"restart them: fab workers.restart --host {r.host} (or config.upload ... --restart)"]
    return []


@command(file="the linked file, as in the app's linked_files (e.g. config/app.env)",
         from_="the file on this machine to upload, or - for standard input",
         restart="restart the app's workers (rolling, as workers.restart) on the hosts where the file changed "
                 "or where workers still run with an older one")
def upload(
    c: Context, file: str | None = None, from_: str | None = None, inventory: str | None = None,
    host: str | None = None, app: str | None = None, restart: bool = False, dry_run: bool = False,
    verbose: bool = False, json: bool = False,
) -> None:
    """Put a linked file into shared/ on every host of the app: mode 0600, owned by the workers' user."""
    from deploytool import task_reports
    from deploytool.operations import shared_files
    from deploytool.redact import redact

    inv = load(c, inventory)
    if not file or not from_:
        raise InputError("config.upload needs --file LINKED_FILE and --from PATH")
    targets = one_app(select_targets(inv, host, app), inv.path)
    # Every host's file is checked before any host is contacted: bad input touches nothing.
    files = {t.host: shared_files.shared_file(inv, t.host, t.app, file) for t in targets}
    with tempfile.TemporaryDirectory(prefix="deploytool-upload-") as workdir:
        done = upload_all(inv, files, read_content(from_, Path(workdir)), dry_run, source_name(from_))
    if not dry_run:
        settle_workers(inv, targets, done, {h: f.path for h, f in files.items()}, restart, json)
    elif restart:
        for r in done:
            if r.details.get("result") == shared_files.WOULD_CHANGE:
                r.details["result"] += " (its workers would be restarted, rolling)"
    if json:
        print(json_text(task_reports.config_upload(done, file, dry_run)))
    else:
        if dry_run:
            print(redact("\n".join(plan_lines(files, from_, verbose))))
        for r in done:
            shown = r.details.get("result") or f"{r.status}: {r.error}"
            print(redact(f"{r.host}: {r.app}: {files[r.host].path}: {shown}"))
            print(redact("\n".join(effect_lines(r))), end="\n" if effect_lines(r) else "")
    if any(r.status != "ok" for r in done):
        raise Exit(code=1)


def settle_workers(inv: Inventory, targets: list[Target], done: list[HostReport], paths: dict[str, str],
                   restart: bool, json: bool) -> None:
    """After the upload: which workers run with an older file (`details.stale_workers`: their units load
    it and they started before it changed). With `restart`, the app's workers restarted, rolling
    (`details.restarted`; a failed restart fails the host) on each host where such workers run, or
    where the file changed, no unit loads it (the app reads it itself) and workers run. Where none
    run yet, nothing is restarted: the first deploy starts them with the new file."""
    from deploytool import stale_workers
    from deploytool.operations import shared_files
    from deploytool.operations.workers import Workers

    uploaded = [t for t, r in zip(targets, done, strict=True) if r.status == "ok"]
    if not uploaded:
        return
    seen = read_workers(inv, uploaded, paths)
    reports = {r.host: r for r in done}
    chosen = []
    for t in uploaded:
        s = seen[t.host]
        reports[t.host].details["stale_workers"] = s.stale if s else None
        changed = reports[t.host].details.get("result") == shared_files.CHANGED
        unloaded = not stale_workers.wanted_units(inv, t.host, t.app, paths[t.host])
        if s and (s.stale or (changed and unloaded and s.running)):
            chosen.append(t)
    if not restart:
        return
    for t, rr in zip(chosen, restart_workers(inv, chosen, json) if chosen else [], strict=True):
        r = reports[t.host]
        if rr.status == "ok":
            r.details["restarted"], r.details["stale_workers"] = Workers(inv, t.host, t.app).units, []
        else:
            r.status, r.error = "failed", f"restart: {rr.error}"
    for t in uploaded:
        reports[t.host].details.setdefault("restarted", [])


config = Collection("config", upload)
