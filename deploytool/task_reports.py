"""Each task's JSON report: the one envelope (deploytool.report.envelope: task, ok, dry_run, hosts) and
what the task adds to it, built here from plain results so that one test checks every task's shape
without a host (docs/report.md).

Reports written before the envelope had a few per-host keys at a host entry's top level (config.upload's
`result`, check's `findings`, releases' `releases`); they stay there, beside the same value in `details`,
so existing readers keep working."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deploytool.report import HostReport, envelope

# Per task: the `details` keys also shown at a host entry's top level, where earlier reports had them.
TOP_LEVEL = {"config.upload": ("result",), "check": ("findings",), "releases": ("releases",)}


def report(reports: list[HostReport], task: str, dry_run: bool = False,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The envelope, with the task's top-level per-host keys (TOP_LEVEL) added to each host entry."""
    data = envelope(reports, task, dry_run, extra)
    keys = TOP_LEVEL.get(task, ())
    for entry in data["hosts"]:
        entry.update({k: entry["details"].get(k) for k in keys})
    return data


def config_upload(reports: list[HostReport], file: str, dry_run: bool) -> dict[str, Any]:
    """details: `result` (changed, unchanged, would change); extra: `file`, the linked file."""
    return report(reports, "config.upload", dry_run, {"file": file})


def check(reports: list[HostReport]) -> dict[str, Any]:
    """details: `findings`, each {check, ok, detail, note}."""
    return report(reports, "check")


def releases(reports: list[HostReport]) -> dict[str, Any]:
    """details: `releases`, each {release, revision, current}, newest first."""
    return report(reports, "releases")


def workers_status(reports: list[HostReport], units: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """extra: `units` (one entry per unit on every host), `errors` (the failed hosts' errors)."""
    return report(reports, "workers.status",
                  extra={"units": list(units), "errors": [r.error for r in reports if r.error]})


def jobs_status(reports: list[HostReport], found: Mapping[str, Any]) -> dict[str, Any]:
    """extra: what jobs.status found (deploytool.jobs.formats.json_report: `queues`, `errors`,
    `violations`); `ok` is the envelope's, which the host entries (one per app) already make false for
    an error or a violation."""
    return report(reports, "jobs.status", extra={k: v for k, v in found.items() if k != "ok"})


def inventory_check(path: str, hosts: Mapping[str, Any]) -> dict[str, Any]:
    """No host is contacted: `hosts` is empty; extra: `inventory` (its path) and `inventory_hosts`
    (per host: address, port, user, roles, and per app its deploy_to and worker groups)."""
    return report([], "inventory.check", extra={"inventory": path, "inventory_hosts": dict(hosts)})
