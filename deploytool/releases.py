"""Listing releases and rolling back to one, on one host."""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploytool import lock
from deploytool import workers as ops
from deploytool.commands import release as rel
from deploytool.errors import HostError
from deploytool.hostwork import on_host
from deploytool.inventory import App, Inventory
from deploytool.lock import Holder
from deploytool.remote import Session
from deploytool.report import HostReport, Reporter
from deploytool.workers import Workers


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


def listing(session: Session, app: App) -> list[dict[str, Any]]:
    return parse_listing(session.run(rel.list_releases(app), "releases").stdout)


def list_host(inv: Inventory, host: str, apps: Sequence[App], reports: Sequence[HostReport]) -> bool:
    def work(session: Session, app: App, report: HostReport) -> None:
        report.details["releases"] = listing(session, app)

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


def rollback_host(
    inv: Inventory, host: str, apps: Sequence[App], wanted: str | None, template_dirs: Sequence[Path],
    reports: Sequence[HostReport], out: Reporter, force_unlock: bool = False,
) -> bool:
    def work(session: Session, app: App, report: HostReport) -> None:
        with out.stage(report, "lock"):
            lock.acquire(session, app, Holder.me("", wanted or "previous"), force_unlock)
        try:
            _rollback(session, inv, host, app, wanted, template_dirs, report, out)
        finally:
            lock.release(session, app)

    return on_host(inv.hosts[host], apps, reports, out, work)


def _rollback(session: Session, inv: Inventory, host: str, app: App, wanted: str | None,
              template_dirs: Sequence[Path], report: HostReport, out: Reporter) -> None:
    w = Workers(inv, host, app)
    with out.stage(report, "check"):
        rows = listing(session, app)
        try:
            target = choose(rows, wanted)
        except HostError as e:
            raise HostError(f"{host}: rollback: {e}") from None
        report.release = target
        report.revision = next(r["revision"] for r in rows if r["release"] == target) or None
    try:
        # As in a deploy: switch first, then quiet each worker right before it stops (ops.restart).
        with out.stage(report, "switch"):
            session.run(rel.switch_current(app, target), "switch")
        with out.stage(report, "units"):
            ops.install(session, w, template_dirs)
        with out.stage(report, "restart"):
            ops.restart(session, w)
    except HostError:
        # Whatever `current` is now, its workers must not stay quiet or stopped.
        with contextlib.suppress(HostError):
            ops.recover(session, w)
        raise
    with out.stage(report, "log"):
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {who} rolled back to release {target}"
        session.run(rel.log_revision(app, line), "log")
    report.details["rolled_back_to"] = target
