"""`fab check`: per host, is it ready for a deploy? Read only; every problem listed; exit 1 if any."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.project import project_dir, project_templates
from deploytool.report import HostReport, Reporter, json_text
from deploytool.tasks.options import command, load, select_targets

if TYPE_CHECKING:  # the checks and SSH are imported by the task body, not by `fab --list`
    from deploytool.inventory import App

# Checks whose passing results are shown as one line listing their names.
LISTED = ("sudo", "program")


def archive_sizes(apps: dict[str, App], revision: str | None) -> dict[str, int | None]:
    """The packed release of each archive-strategy app, as a deploy would upload it (bytes)."""
    from deploytool.source import pack, resolve

    sizes: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory(prefix="deploytool-check-") as tmp:
        for name, app in apps.items():
            if app.source.strategy == "archive":
                sizes[name] = pack(app, resolve(app, revision), Path(tmp)).stat().st_size
            else:
                sizes[name] = None
    return sizes


def lines(report: HostReport) -> list[str]:
    from deploytool.operations import check as checks
    from deploytool.operations.check import Finding

    found = [Finding(**f) for f in report.details.get("findings", [])]
    bad = checks.problems(found)
    head = f"{report.host}: {report.app}: " + (f"{len(bad)} problem{'s' * (len(bad) != 1)}" if bad else "ok")
    out = [head]
    passed: dict[str, list[str]] = defaultdict(list)
    for f in found:
        if f.ok and f.check in LISTED:
            passed[f.check].append(f.detail.removeprefix("sudo -n "))
            continue
        mark = "note" if f.note else "ok" if f.ok else "PROBLEM"
        out.append(f"  {mark:<8} {f.check:<15} {f.detail}")
    for check, names in passed.items():
        out.append(f"  {'ok':<8} {check:<15} {' '.join(names)}")
    return out


@command(revision="git revision whose packed size is compared with the free disk (default: the app's)")
def check(
    c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
    role: str | None = None, revision: str | None = None, json: bool = False,
) -> None:
    """Check that hosts are ready for a deploy (host key, sudo, deploy_to, linked files, programs, disk,
    units); changes nothing; exit 1 if any problem."""
    from deploytool import task_reports
    from deploytool.engine import runner as engine
    from deploytool.engine.plan import Facts
    from deploytool.operations import check as checks
    from deploytool.operations.check import Finding

    inv = load(c, inventory)
    targets = select_targets(inv, host, app, role)
    templates = project_templates(project_dir(c.config))
    sizes = archive_sizes({t.app.name: t.app for t in targets}, revision)

    def job(h: str, a: App) -> engine.Job:
        plan = checks.check_plan(inv, h, a, templates)
        output: list[str] = [""]

        def note(facts: Facts, report: HostReport) -> None:
            output[0] = facts.get(checks.OUTPUT, "")

        def finish(report: HostReport) -> None:
            if report.status != "ok":
                return
            found = checks.check_findings(output[0], inv, h, a, templates, sizes[a.name])
            report.details["findings"] = [asdict(f) for f in found]
            bad = checks.problems(found)
            if bad:
                report.status, report.error = "failed", "; ".join(f"{f.check}: {f.detail}" for f in bad)

        return engine.Job(h, a, lambda facts: plan, note=note, finish=finish)

    # Read only: one plan of read-only steps per host and app, run by the one runner.
    done = engine.run(inv, [job(t.host, t.app) for t in targets], Reporter(quiet=True))
    for r in done:
        if r.status == "failed" and "findings" not in r.details:
            # Not connected: an unknown or changed host key, or an unreachable host.
            what = "host key" if "host key" in (r.error or "") else "connect"
            r.details["findings"] = [asdict(Finding(what, False, r.error or ""))]
    if json:
        print(json_text(task_reports.check(done)))
    else:
        for r in done:
            print("\n".join(lines(r)))
    if any(r.status != "ok" for r in done):
        raise Exit(code=1)
