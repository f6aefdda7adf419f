"""Listing releases and rolling back to one, on one host."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploytool import procfile_groups
from deploytool.commands import release as rel
from deploytool.engine.hostwork import on_host
from deploytool.engine.lock import Holder, last_run_note
from deploytool.engine.plan import Action, Facts, Lock, Plan, Recovery, Script, Step, Unlock
from deploytool.engine.runner import Job, Preview
from deploytool.errors import HostError, InputError
from deploytool.inventory import App, Inventory
from deploytool.operations import workers as ops
from deploytool.operations.workers import Workers
from deploytool.remote import Session, script
from deploytool.report import HostReport, Reporter


def parse_listing(text: str) -> list[dict[str, Any]]:
    """`NAME REVISION` lines then `current NAME` → newest first, current marked."""
    current = ""
    rows: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "current":
            current = parts[1] if len(parts) > 1 else ""
        else:
            rows.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return [{"release": r, "revision": rev, "current": r == current} for r, rev in rows]


def listing(session: Session, app: App) -> tuple[list[dict[str, Any]], str]:
    """The releases, and the host's record of the last deploy or rollback."""
    out = session.run(script(rel.list_releases(app), rel.last_run(app)), "releases").stdout
    last = next((ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith(rel.LAST + " ")), "")
    return parse_listing("\n".join(ln for ln in out.splitlines() if not ln.startswith(rel.LAST))), last


def list_host(inv: Inventory, host: str, apps: Sequence[App], reports: Sequence[HostReport]) -> bool:
    def work(session: Session, app: App, report: HostReport) -> None:
        report.details["releases"], last = listing(session, app)
        note = last_run_note(host, app.name, last)
        if note:
            report.details["last_deploy"] = note

    return on_host(inv.hosts[host], apps, reports, Reporter(quiet=True), work)


def choose(releases: list[dict[str, Any]], wanted: str | None) -> str:
    """The named release, or the one just before `current`."""
    names = [r["release"] for r in releases]
    current = next((r["release"] for r in releases if r["current"]), None)
    if wanted:
        if wanted not in names:
            raise HostError(f"release {wanted} does not exist (have: {', '.join(names) or 'none'})")
        if wanted == current:
            raise HostError(f"release {wanted} is already current")
        return wanted
    if current is None or current not in names:
        raise HostError("no current release to roll back from")
    older = names[names.index(current) + 1 :]
    if not older:
        raise HostError(f"no release older than the current {current} to roll back to")
    return str(older[0])


def as_released(inv: Inventory, host: str, app: App, rows: list[dict[str, Any]],
                release: str) -> tuple[Inventory, str, App]:
    """(inventory, host, app) as `release` wants its units: `procfile:` groups take the command of the
    Procfile at the revision the release records (deploytool.procfile_groups), read here."""
    revision = next((r["revision"] for r in rows if r["release"] == release), "")
    try:
        at, app = procfile_groups.as_of(inv, host, app, revision)
    except InputError as e:
        raise HostError(f"{host}: rollback: release {release}: {e}") from None
    return at, host, app


def rollback_plan(inv: Inventory, host: str, app: App, wanted: str | None, template_dirs: Sequence[Path],
                  facts: Facts, holder: Holder, force_unlock: bool = False, dry: bool = False,
                  reason: str = "") -> Plan:
    """Lock, read the releases, then (once the host listed them) switch `current` to the chosen one,
    sync the units, quiet and restart the workers, log it. On failure: `current` back where it was,
    units as the inventory wants them, workers running. `dry`: a plan to print (the units stage says
    what it does instead of carrying the environment files' content). `reason`: why, for revisions.log
    (a canary's gate)."""
    actions: list[Action] = [Lock(app, holder, force_unlock), Script((Step("check", rel.list_releases(app)),))]
    recovery: tuple[Recovery, ...] = ()
    if "output:check" in facts:
        rows = parse_listing(facts["output:check"])
        try:
            target = choose(rows, wanted)
        except HostError as e:
            raise HostError(f"{host}: rollback: {e}") from None
        before = next((r["release"] for r in rows if r["current"]), "")
        w = Workers(*as_released(inv, host, app, rows, target))
        units = ops.SYNC_PLAN if dry else w.install_script(template_dirs)
        # As in a deploy: switch first, then quiet each worker right before it stops.
        steps = [Step("switch", rel.switch_current(app, target), arms=("switch back", "units", "workers")),
                 Step("units", units, arms=("units", "workers"))]
        if w.units:
            steps += [Step("restart", c, arms=("workers",)) for c in w.quiet_commands()]
            steps.append(Step("restart", ops.restart_script(w), arms=("workers",)))
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {who} rolled back to release {target}"
        line += f" ({reason})" if reason else ""
        actions += [Script(tuple(steps), commits=True), Script((Step("log", rel.log_revision(app, line)),)),
                    Unlock()]
        # Put back: `current` on the release it was on, with that release's units (they differ when
        # a `procfile:` group's line changed between the two).
        released = as_released(inv, host, app, rows, before) if before else None
        back = w if released is None or released[0] is inv else Workers(*released)
        recovery = (Recovery("switch back", rel.switch_back(app, target, before)),
                    Recovery("units", "(units as the inventory wants them)" if dry else
                             units if back is w else back.install_script(template_dirs)),
                    *((Recovery("workers", ops.recover_script(back)),) if back.units else ()))
    return Plan(tuple(actions), recovery)


def rollback_job(inv: Inventory, host: str, app: App, wanted: str | None, template_dirs: Sequence[Path],
                 force_unlock: bool = False, reason: str = "") -> Job:
    """The rollback of `app` on `host` as the engine runs it; its dry run lists the releases (read only)
    and says which would become current, with the units and instances the sync would change."""
    holder = Holder.me("", wanted or "previous")

    def note(facts: Facts, report: HostReport) -> None:
        last = last_run_note(host, app.name, facts.get("last", ""))
        if last:
            report.details["last_deploy"] = last
        if "output:check" in facts and report.release is None:
            rows = parse_listing(facts["output:check"])
            report.release = choose(rows, wanted)
            report.revision = next(r["revision"] for r in rows if r["release"] == report.release) or None
            report.details["rolled_back_to"] = report.release

    def preview(session: Session) -> Preview:
        listed = session.run(rel.list_releases(app), "preview").stdout
        rows = parse_listing(listed)
        try:
            target = choose(rows, wanted)
        except HostError as e:
            raise HostError(f"{host}: rollback: {e}") from None
        before = next((r["release"] for r in rows if r["current"]), "")
        revision = next(r["revision"] for r in rows if r["release"] == target) or "unknown revision"
        # deploytool.operations.check builds on the deploy plan: imported where a dry run needs it.
        from deploytool.operations.check import lock_held

        w = Workers(*as_released(inv, host, app, rows, target))
        return Preview(facts={"output:check": listed},
                       changes=[f"current: {before} -> {target} ({revision})",
                                *ops.preview(session, w, template_dirs, starts=True)],
                       problems=lock_held(session, app))

    return Job(host, app, lambda facts: rollback_plan(inv, host, app, wanted, template_dirs, facts, holder,
                                                      force_unlock, reason=reason),
               note=note, preview=preview,
               dry_plan=lambda seen: rollback_plan(inv, host, app, wanted, template_dirs, seen.facts, holder,
                                                   force_unlock, dry=True),
               title=f"roll back to {wanted or 'the release before current'}")
