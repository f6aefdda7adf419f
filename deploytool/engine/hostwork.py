"""One host's share of a task: one connection, then one piece of work per app, each with its report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from deploytool.errors import HostError
from deploytool.inventory import Host
from deploytool.remote import DEFAULT_TIMEOUT, Session, connect
from deploytool.report import HostReport, Reporter, StageReport

T = TypeVar("T")


def on_host(host: Host, items: Sequence[T], reports: Sequence[HostReport], out: Reporter,
            work: Callable[[Session, T, HostReport], None], timeout: float = DEFAULT_TIMEOUT,
            session: Session | None = None) -> bool:
    """Connect once and run `work` for each item; a HostError fails only that item's report, a failed
    connection fails them all. True if every report is ok. `session`: a connection to the host opened
    earlier in the same task, handed over (one connection per host per task); closed here either way."""
    if session is not None:
        # The connection this task opened earlier is this host's one: reported as its connect stage.
        began, seconds = session.opened
        reports[0].stages.append(StageReport("connect", round(seconds, 3), "ok", round(max(0.0, began - out.t0), 3)))
    else:
        try:
            with out.stage(reports[0], "connect"):
                session = connect(host, timeout)
        except HostError as e:
            for r in reports:
                r.status, r.error = "failed", str(e)
            return False
    try:
        for item, report in zip(items, reports, strict=True):
            try:
                work(session, item, report)
            except HostError as e:
                report.status, report.error = "failed", out.redact(str(e))
    finally:
        for r in reports:
            r.commands, r.uploads, r.connections = session.commands, session.uploads, 1
        session.close()
    return all(r.status == "ok" for r in reports)
