"""`fab deploy`, `fab rollback`, `fab releases`: Capistrano-style releases on the hosts."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.engine.rolling import batch_size, run
from deploytool.project import project_dir, project_templates
from deploytool.report import HostReport, Reporter, json_text, mark_skipped
from deploytool.tasks.options import Target, command, load, select_targets

# The deploy machinery (inventory model, units, SSH) is imported in the task bodies: `fab --list`
# and every other task do not pay for it.
if TYPE_CHECKING:
    from deploytool.engine import runner as engine
    from deploytool.engine.runner import Job
    from deploytool.inventory import Inventory
    from deploytool.operations.waves import Watch
    from deploytool.remote import Session
    from deploytool.source import Revision

DEPLOY_HELP = {
    "revision": "git revision to deploy (default: the app's source.revision)",
    "parallel": "hosts deployed at once (default: all of a batch)",
    "batch": "rolling batches: N hosts or P% of them at a time (default: all at once)",
    "restart_batch": "hosts whose workers restart at once, N or P% (default 1: rolling, the others keep working)",
    "max_fail": "hosts that may fail before the remaining batches are cancelled (default 0)",
    "canary": "deploy N hosts (or P%) first and watch them for the soak time before the rest; a tripped "
              "gate rolls them back and switches no further host (the rest stage the release meanwhile)",
    "soak": "seconds each watched batch is soaked (default: the app's `soak:`); alone: every batch is watched",
    "max_failed_increase": "new retrying/dead jobs a queue may gain during a soak (default 0)",
    "no_rollback": "leave a batch whose gate tripped as it is, for a person to look at",
    "force_unlock": "clear a lock directory left by an older deploytool whose deploy died (a live "
                    "deploy's lock is never broken; a dead one's frees itself within the heartbeat bound)",
}


def secrets(inv: Inventory) -> list[str]:
    from deploytool.redact import inventory_secrets

    return inventory_secrets(inv)


def by_host(targets: list[Target]) -> dict[str, list[Target]]:
    hosts: dict[str, list[Target]] = defaultdict(list)
    for t in targets:
        hosts[t.host].append(t)
    return dict(hosts)


def once_hosts(inv: Inventory, targets: list[Target]) -> dict[str, str]:
    """Per app, the host that runs its `once: true` hooks: the first in inventory order of those this
    deploy covers (whatever the order of --host), so the choice is the same on every run."""
    chosen: dict[str, str] = {}
    for h in inv.hosts:
        for t in targets:
            if t.host == h:
                chosen.setdefault(t.app.name, h)
    return chosen


def finish(out: Reporter, reports: list[HostReport], json: bool, task: str, **extra: str) -> None:
    if json:
        out.json(reports, task, extra=extra)
    else:
        out.summary(reports)
    failed = [r.host for r in reports if r.status != "ok"]
    if failed:
        raise Exit(code=1)


@command(**DEPLOY_HELP)
def deploy(
    c: Context,
    inventory: str | None = None,
    host: str | None = None,
    app: str | None = None,
    role: str | None = None,
    revision: str | None = None,
    parallel: int = 0,
    batch: str | None = None,
    restart_batch: str | None = None,
    max_fail: int = 0,
    timeout: float | None = None,
    force_unlock: bool = False,
    canary: str | None = None,
    soak: float | None = None,
    max_failed_increase: int = 0,
    no_rollback: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
    json: bool = False,
) -> None:
    """Ship a new release, switch `current` and restart the workers."""
    from deploytool.jobs import ownership
    from deploytool.operations.deploy import release_name
    from deploytool.operations.waves import Watch
    from deploytool.procfile_groups import at_revisions
    from deploytool.source import resolve

    inv = load(c, inventory, procfile=False)
    targets = select_targets(inv, host, app, role)
    # Resolved once: the code packed and the Procfile the units' commands come from are one commit.
    revisions = {t.app.name: resolve(t.app, revision) for t in targets}
    inv = at_revisions(inv, revisions)
    targets = select_targets(inv, host, app, role)
    out = Reporter(secrets(inv), quiet=json)
    name = release_name()
    templates = project_templates(project_dir(c.config))
    # Before anything is touched: no other app's workers or queues in the apps' Redis DBs. The check's
    # connections are the deploy's: each host sees one per deploy.
    sessions: dict[str, Session] = {}
    try:
        checked = ownership.preflight(inv, [(t.host, t.app) for t in targets], out, keep=sessions)
        if any(r.status != "ok" for r in checked):
            finish(out, checked, json, "deploy")
        watch = (Watch(canary, soak, max_failed_increase, not no_rollback)
                 if canary or soak is not None else None)
        reports = _deploy(inv, targets, out, name, templates, revisions, batch, parallel, restart_batch, max_fail,
                          timeout, force_unlock, dry_run, json, sessions, verbose, watch)
    finally:
        for session in sessions.values():  # those no host's deploy took over (closing twice is harmless)
            session.close()
    if any(r.status != "ok" for r in reports):
        raise Exit(code=1)


def _deploy(inv: Inventory, targets: list[Target], out: Reporter, name: str, templates: list[Path],
            revisions: dict[str, Revision], batch: str | None, parallel: int, restart_batch: str | None, max_fail: int,
            timeout: float | None, force_unlock: bool, dry_run: bool, json: bool,
            sessions: dict[str, Session], verbose: bool = False, watch: Watch | None = None) -> list[HostReport]:
    from deploytool.engine import runner as engine
    from deploytool.operations.deploy import Deploy
    from deploytool.source import pack, uncommitted

    apps = {t.app.name: t.app for t in targets}
    for n, rev in revisions.items():
        left_out = uncommitted(rev)
        if left_out:
            shown = ", ".join(left_out[:5]) + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "")
            out.line(f"warning: {n}: {rev.repository} has changes not committed at {rev.ref} ({shown}): "
                     f"the deploy ships {rev.commit[:12]} without them")
    with tempfile.TemporaryDirectory(prefix="deploytool-") as tmp:
        # A dry run packs too (locally), for the disk check's size, but sends nothing.
        packed = {n: (pack(a, revisions[n], Path(tmp)) if a.source.strategy == "archive" else None)
                  for n, a in apps.items()}
        archives = {n: (None if dry_run else p) for n, p in packed.items()}
        sizes = {n: (p.stat().st_size if p else None) for n, p in packed.items()}
        grouped = by_host(targets)
        once = once_hosts(inv, targets)
        jobs = [Deploy(inv, h, t.app, revisions[t.app.name], name, archives[t.app.name], templates, force_unlock,
                       once_host=once[t.app.name] == h, archive_bytes=sizes[t.app.name]).job()
                for h, ts in grouped.items() for t in ts]
        # Workers restart rolling (`restart_at_once` hosts at a time) while the rest runs in parallel.
        rollout = engine.Rollout(batch=batch, parallel=parallel, max_fail=max_fail, timeout=timeout,
                                 restart_at_once=batch_size(restart_batch, len(grouped), default=1))
        if watch is None:
            return engine.perform(inv, jobs, out, "deploy", json=json, dry_run=dry_run, rollout=rollout,
                                  extra={"release": name}, sessions=sessions, verbose=verbose)
        return _watched(inv, targets, jobs, out, name, templates, rollout, watch, dry_run, json, sessions)


def _watched(inv: Inventory, targets: list[Target], jobs: list[Job], out: Reporter, name: str,
             templates: list[Path], rollout: engine.Rollout, watch: Watch, dry_run: bool, json: bool,
             sessions: dict[str, Session]) -> list[HostReport]:
    """The deploy in waves, each watched wave soaked before the next switches (deploytool.operations.waves)."""
    from deploytool.engine import runner as engine
    from deploytool.operations.waves import Waves

    waves = Waves(inv, targets, watch, templates, rollout, out)
    if dry_run:
        if not json:
            for line in waves.lines():
                print(out.redact(line), flush=True)
        return engine.perform(inv, jobs, out, "deploy", json=json, dry_run=True, rollout=rollout,
                              extra={"release": name, "watch": waves.describe()}, sessions=sessions)
    reports = waves.run(jobs, sessions)
    extra = {"release": name, "watch": {**waves.describe(), "soaks": waves.soaks}}
    if json:
        out.json(reports, "deploy", extra=extra)
    else:
        out.summary(reports)
    return reports


@command(release="release to roll back to (timestamp; default: the one before current)",
         force_unlock=DEPLOY_HELP["force_unlock"])
def rollback(
    c: Context,
    inventory: str | None = None,
    host: str | None = None,
    app: str | None = None,
    release: str | None = None,
    timeout: float | None = None,
    force_unlock: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
    json: bool = False,
) -> None:
    """Switch `current` back to an earlier release and restart the workers."""
    from deploytool.engine import runner as engine
    from deploytool.operations.releases import rollback_job

    inv = load(c, inventory)
    targets = select_targets(inv, host, app)
    out = Reporter(secrets(inv), quiet=json)
    templates = project_templates(project_dir(c.config))
    jobs = [rollback_job(inv, h, t.app, release, templates, force_unlock)
            for h, ts in by_host(targets).items() for t in ts]
    reports = engine.perform(inv, jobs, out, "rollback", json=json, dry_run=dry_run,
                             rollout=engine.Rollout(default_batch=1, timeout=timeout), verbose=verbose)
    if any(r.status != "ok" for r in reports):
        raise Exit(code=1)


@command()
def releases(
    c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
    json: bool = False,
) -> None:
    """List the releases on each host, newest first, current marked."""
    from deploytool import task_reports
    from deploytool.operations import releases as rel_ops
    from deploytool.redact import redact

    inv = load(c, inventory)
    targets = select_targets(inv, host, app)
    Reporter(secrets(inv), quiet=True)
    reports = {h: [HostReport(h, t.app.name) for t in ts] for h, ts in by_host(targets).items()}
    run(list(reports), lambda h: rel_ops.list_host(inv, h, [t.app for t in by_host(targets)[h]], reports[h]),
        lambda h, reason: mark_skipped(reports[h], reason))
    all_reports = [r for rs in reports.values() for r in rs]
    if json:
        print(json_text(task_reports.releases(all_reports)))
    else:
        for r in all_reports:
            print(redact(f"{r.host}: {r.app}" + (f": error: {r.error}" if r.error else "")))
            for item in r.details.get("releases", []):
                mark = "*" if item["current"] else " "
                print(f"  {mark} {item['release']}  {item['revision'][:12]}")
            if r.details.get("last_deploy"):
                print(redact(f"  note: {r.details['last_deploy']}"))
    if any(r.status != "ok" for r in all_reports):
        raise Exit(code=1)
