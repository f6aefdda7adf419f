"""The one runner of every changing task (deploy, rollback, the worker operations): one SSH connection
per host, each (host, app)'s plan run by the one executor (deploytool.engine.execute), hosts in parallel or in
rolling batches, stopping once too many failed; and its dry run, which prints the same plans with what
they would change, read from the hosts without changing anything.

A task describes each (host, app) as a Job (how to build its plan, what to read for a dry run), and
passes the Jobs and its Rollout (batches, timeouts) to `perform`."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from deploytool.engine import rolling
from deploytool.engine.execute import Execution, Hold
from deploytool.engine.hostwork import on_host
from deploytool.engine.plan import Facts, Lock, Plan, describe
from deploytool.inventory import App, Inventory
from deploytool.remote import DEFAULT_TIMEOUT, Session
from deploytool.report import HostReport, Reporter, mark_skipped


@dataclass(frozen=True)
class Preview:
    """What a dry run read from a host: facts for the plan (as the host would report them) and lines
    saying what would change (unit diffs, instances started or stopped, the release made current)."""

    facts: Facts = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    # What would make the real run fail (a missing linked file, a held lock): the dry run fails with them.
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """One app on one host, as a task hands it to the engine."""

    host: str
    app: App
    plan: Callable[[Facts], Plan]  # rebuilt after each round trip from what the host reported
    # What the host's facts add to the report (the release it settled on); a dry run's with what it read.
    note: Callable[[Facts, HostReport], None] | None = None
    # The last word on the report once the plan ran: a failure no command can express (quiet --strict).
    finish: Callable[[HostReport], None] | None = None
    # Dry run: what to read from the host (read only), and the plan to print for it (default: `plan`
    # with the facts read). That plan names secret files and never holds their content.
    preview: Callable[[Session], Preview] | None = None
    dry_plan: Callable[[Preview], Plan] | None = None
    title: str = ""  # dry run: said after `host: app:` (the release, the revision)


@dataclass(frozen=True)
class Rollout:
    """How hosts are driven: rolling batches (N or P%; `default_batch` hosts when not given, 0: all),
    at most `parallel` at once (0: the whole batch), stop after more than `max_fail` failed hosts,
    each stage bounded by `timeout` (default: the app's). `restart_at_once` > 0: at most that many
    hosts run their plans' rolling scripts (the workers' restart) at the same time."""

    batch: str | None = None
    default_batch: int = 0
    parallel: int = 0
    max_fail: int = 0
    timeout: float | None = None
    restart_at_once: int = 0


def by_host(jobs: Iterable[Job]) -> dict[str, list[Job]]:
    hosts: dict[str, list[Job]] = {}
    for j in jobs:
        hosts.setdefault(j.host, []).append(j)
    return hosts


def _connect_timeout(jobs: Sequence[Job], timeout: float | None) -> float:
    return timeout or max((j.app.timeout for j in jobs), default=DEFAULT_TIMEOUT)


def run(inv: Inventory, jobs: Sequence[Job], out: Reporter, rollout: Rollout = Rollout(),
        sessions: Mapping[str, Session] | None = None, holds: Mapping[str, Hold] | None = None,
        done: Callable[[str, list[HostReport]], None] | None = None) -> list[HostReport]:
    """Run every job's plan, one connection per host, hosts as `rollout` says; the reports in job order.
    `sessions`: connections the task opened before (the redis check's), used instead of new ones.
    `holds`: per host, where its plans' `held` scripts wait (a canary's waves); `done`: told each host's
    reports as soon as its plans ended."""
    hosts = by_host(jobs)
    reports = {h: [HostReport(h, j.app.name) for j in js] for h, js in hosts.items()}
    gate = threading.Semaphore(rollout.restart_at_once) if rollout.restart_at_once > 0 else None

    def one(session: Session, job: Job, report: HostReport) -> None:
        ex = Execution(session, job.host, report, out, gate, rollout.timeout or job.app.timeout,
                       (holds or {}).get(job.host))

        def build(facts: Facts) -> Plan:
            if job.note is not None:
                job.note(facts, report)
            return job.plan(facts)

        ex.run(build)
        if job.finish is not None:
            job.finish(report)

    def work(h: str) -> bool:
        hold = (holds or {}).get(h)
        if hold is not None and hold.refused is not None:  # its wave will not switch: not even staged
            skipped(h, f"not started: {hold.refused}")
            return False
        try:
            return on_host(inv.hosts[h], hosts[h], reports[h], out, one,
                           _connect_timeout(hosts[h], rollout.timeout), (sessions or {}).get(h))
        finally:
            if done is not None:
                done(h, reports[h])

    def skipped(h: str, reason: str) -> None:
        mark_skipped(reports[h], reason)
        if done is not None:
            done(h, reports[h])

    rolling.run(list(hosts), work, skipped, batch=rollout.batch, default_batch=rollout.default_batch,
                parallel=rollout.parallel, max_fail=rollout.max_fail)
    return _in_job_order(jobs, reports)


def _in_job_order(jobs: Sequence[Job], reports: Mapping[str, list[HostReport]]) -> list[HostReport]:
    taken = {h: iter(rs) for h, rs in reports.items()}
    return [next(taken[j.host]) for j in jobs]


def preview_plans(inv: Inventory, jobs: Sequence[Job], out: Reporter, timeout: float | None = None,
                  sessions: Mapping[str, Session] | None = None) -> list[HostReport]:
    """Each job's plan as data, with what it would change read from its host (one connection per host,
    hosts at once, nothing changed): `details["plan"]` = [{"stage", "commands"}], `details["changes"]`,
    `details["on_failure"]` (the recovery steps, by name). A host that cannot be read fails its report."""
    hosts = by_host(jobs)
    reports = {h: [HostReport(h, j.app.name) for j in js] for h, js in hosts.items()}
    quiet = Reporter(out.secrets, quiet=True)

    def one(session: Session, job: Job, report: HostReport) -> None:
        seen = job.preview(session) if job.preview is not None else Preview()
        if job.note is not None:
            job.note(seen.facts, report)
        plan = job.dry_plan(seen) if job.dry_plan is not None else job.plan(seen.facts)
        report.details.update(plan_data(plan, seen.changes))
        if seen.problems:
            report.details["problems"] = list(seen.problems)
            report.status, report.error = "failed", f"{job.host}: would fail: " + "; ".join(seen.problems)

    def work(h: str) -> bool:
        return on_host(inv.hosts[h], hosts[h], reports[h], quiet, one, _connect_timeout(hosts[h], timeout),
                       (sessions or {}).get(h))

    rolling.run(list(hosts), work, lambda h, reason: mark_skipped(reports[h], reason))
    return _in_job_order(jobs, reports)


def plan_data(plan: Plan, changes: Sequence[str] | None = None) -> dict[str, Any]:
    """A plan as a dry run reports it: stages with their commands, what the host read says would change
    (when a preview read it), recovery steps by name."""
    on_failure = [r.name for r in plan.recovery]
    if any(isinstance(a, Lock) for a in plan.actions):
        on_failure.append("unlock")
    data: dict[str, Any] = {"plan": [{"stage": s, "commands": cmds} for s, cmds in describe(plan)]}
    if changes is not None:
        data["changes"] = list(changes)
    data["on_failure"] = on_failure
    return data


DRY_RUN = "dry run: nothing is uploaded, locked or changed; hosts are only read (checks, units, instances, releases)"


def dry_run_text(jobs: Sequence[Job], reports: Sequence[HostReport], verbose: bool = False) -> str:
    """What `--dry-run` prints: per host and app, what would make the real run fail, what would change and
    the stages in order; `verbose`: every unit diff line and each stage's commands."""
    lines = [DRY_RUN]
    for job, r in zip(jobs, reports, strict=True):
        lines.append(f"\n{r.host}: {r.app}" + (f": {job.title}" if job.title else ""))
        problems = r.details.get("problems", [])
        if problems:
            lines.append("  would fail (the real run stops at its check stage, nothing changed):")
            lines += [f"    {p}" for p in problems]
        elif r.status != "ok":
            lines.append(f"  error: {r.error}")
            continue
        if r.details.get("changes"):
            lines.append("  would change:")
            changes = r.details["changes"] if verbose else summarize_changes(r.details["changes"])
            lines += [f"    {ln}" for ln in changes]
        if not r.details.get("plan"):
            lines.append("  (nothing to do)")
        elif not verbose:
            stages = list(dict.fromkeys(stage["stage"] for stage in r.details["plan"]))
            lines.append(f"  stages: {', '.join(stages)}  (--verbose: each stage's commands)")
        for stage in r.details.get("plan", []) if verbose else []:
            lines.append(f"  [{stage['stage']}]")
            for cmd in stage["commands"]:
                lines += [f"    {ln}" for ln in elide_programs(cmd).splitlines()]
        if r.details.get("on_failure"):
            lines.append("  [on failure] each on its own, whatever fails: " + ", ".join(r.details["on_failure"]))
    return "\n".join(lines)


def summarize_changes(changes: Sequence[str]) -> list[str]:
    """The changes with each unit diff (deploytool.operations.workers.unit_diff) told in one line: new, removed, or
    how many lines change; other lines (environment files, instances) as they are."""
    out: list[str] = []
    i = 0
    while i < len(changes):
        line = changes[i]
        if not (line.startswith("--- ") and i + 1 < len(changes) and changes[i + 1].startswith("+++ ")):
            out.append(line)
            i += 1
            continue
        before, after = line[4:], changes[i + 1][4:]
        i += 2
        added = removed = 0
        while i < len(changes) and changes[i][:1] in ("@", "+", "-", " ") and not changes[i].startswith("--- "):
            if not changes[i].startswith("@@"):
                added += changes[i].startswith("+")
                removed += changes[i].startswith("-")
            i += 1
        if before == "/dev/null":
            out.append(f"{after}: new unit ({added} lines)")
        elif after.startswith("/dev/null"):
            out.append(f"{before.removesuffix(' (on the host)')}: would be removed")
        else:
            out.append(f"{after}: changed (+{added} -{removed} lines)")
    return out


def elide_programs(command: str) -> str:
    """Programs sent as here-documents (deploytool/requeue/) are shown by name, not line by line."""
    from deploytool.commands.requeue import END

    return re.sub(rf"<<'{END}'([^\n]*)\n.*?\n{END}\n",
                  lambda m: f"<<'{END}'{m.group(1)}  (here-document: the deploytool/requeue program)\n",
                  command, flags=re.DOTALL)


def perform(inv: Inventory, jobs: Sequence[Job], out: Reporter, task: str, *, json: bool, dry_run: bool = False,
            rollout: Rollout = Rollout(), extra: Mapping[str, Any] | None = None,
            notes: Sequence[str] = (), sessions: Mapping[str, Session] | None = None,
            verbose: bool = False) -> list[HostReport]:
    """Run the jobs (or with `dry_run` print their plans, every command if `verbose`) and report: one JSON
    report (deploytool.report) or progress lines, `notes` and the summary table. The reports, for the
    task's exit code (a dry run's host fails when its real run would)."""
    reports = (preview_plans(inv, jobs, out, rollout.timeout, sessions) if dry_run
               else run(inv, jobs, out, rollout, sessions))
    if json:
        out.json(reports, task, dry_run=dry_run, extra=extra)
        return reports
    if dry_run:
        print(out.redact(dry_run_text(jobs, reports, verbose)), flush=True)
    for note in sorted(notes):
        out.line(f"note: {note}")
    for r in reports:
        if r.details.get("last_deploy"):  # the host's record: a deploy before this one was abandoned
            out.line(f"note: {r.details['last_deploy']}")
    if not dry_run:
        out.summary(reports)
    return reports


class Target(Protocol):
    """One app on one host (deploytool.tasks.options.Target)."""

    @property
    def host(self) -> str: ...

    @property
    def app(self) -> App: ...


T = TypeVar("T", bound=Target)


def on_hosts(inv: Inventory, targets: Sequence[T], op: Callable[[Session, T, HostReport], None], out: Reporter,
             stage: str | None, rollout: Rollout = Rollout()) -> list[HostReport]:
    """Run `op` for every target, one connection per host, hosts as `rollout` says: for what reads
    hosts without a plan (workers.status). `stage` names the op's one stage in the reports."""
    hosts: dict[str, list[T]] = {}
    for t in targets:
        hosts.setdefault(t.host, []).append(t)
    reports = {h: [HostReport(h, t.app.name) for t in ts] for h, ts in hosts.items()}

    def one(session: Session, t: T, r: HostReport) -> None:
        with out.stage(r, stage) if stage else nullcontext():
            op(session, t, r)

    def work(h: str) -> bool:
        timeout = rollout.timeout or max(t.app.timeout for t in hosts[h])
        return on_host(inv.hosts[h], hosts[h], reports[h], out, one, timeout)

    rolling.run(list(hosts), work, lambda h, reason: mark_skipped(reports[h], reason), batch=rollout.batch,
                default_batch=rollout.default_batch, parallel=rollout.parallel, max_fail=rollout.max_fail)
    return [r for rs in reports.values() for r in rs]
