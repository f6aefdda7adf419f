"""The deploy flow on one host, Capistrano's stages made explicit, with the recovery Capistrano lacks:
a failed step leaves `current` on the old release, its workers running (never quiet), the lock freed.
"""

from __future__ import annotations

import getpass
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploytool import context
from deploytool import workers as ops
from deploytool.commands import release as rel
from deploytool.execute import Execution
from deploytool.hostwork import on_host
from deploytool.inventory import App, Inventory
from deploytool.lock import Holder
from deploytool.plan import Action, Facts, Lock, Plan, Recovery, Script, Step, Unlock, Upload, describe
from deploytool.remote import Session, connect
from deploytool.report import HostReport, Reporter
from deploytool.source import Revision
from deploytool.workers import Workers


def release_name(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class Deploy:
    inv: Inventory
    host: str
    app: App
    revision: Revision
    release: str
    archive: Path | None  # the packed code (archive strategy), uploaded once per host
    template_dirs: Sequence[Path]
    force_unlock: bool = False
    # Bounds how many hosts quiet and restart their workers at once, so workers restart rolling while
    # the rest of the deploy runs in parallel.
    restart_gate: threading.Semaphore | None = None
    timeout: float | None = None  # each stage's bound (--timeout); the app's own `timeout` otherwise
    # This host runs the app's `once: true` hooks (migrations): one host per app and deploy.
    once_host: bool = False

    @property
    def workers(self) -> Workers:
        return Workers(self.inv, self.host, self.app)

    def _remote_archive(self, release: str) -> str:
        return f"{rel.Layout(self.app).releases}/.{release}.tar.gz"

    def build_plan(self, facts: Facts, holder: Holder, unit_changes: Sequence[str] | None = None) -> Plan:
        """The deploy on this host, from what the host reported so far (`facts`: the release name it
        settled on, the release `current` pointed to before). With `unit_changes` (a dry run), the
        units stage shows that diff instead of its script.

        Workers are quieted right before they stop, in the (possibly rolling) restart round trip:
        quieting them early would leave a waiting host idle for the whole rolling restart. Running
        workers keep the code they loaded, so switching `current` first does not change what they run."""
        app, w = self.app, self.workers
        dry = unit_changes is not None  # a plan to print: builders name secret files, never show them
        release = facts.get("release", self.release)
        previous = facts.get("previous", "")
        archive = self._remote_archive(release)
        if app.source.strategy == "archive":
            code = rel.unpack_archive(app, release, archive, self.revision.commit)
        else:
            code = rel.git_export(app, release, self.revision.ref)
        units = self.workers.install_script(self.template_dirs) if unit_changes is None else "\n".join(unit_changes)
        has_units = bool(w.units) or unit_changes is not None
        publish = [Step("switch", rel.switch_current(app, release), arms=("switch back", "units", "workers"))]
        if has_units:
            publish.append(Step("units", units, arms=("units", "workers")))
        restart = [Step("quiet", c, arms=("workers",)) for c in w.quiet_commands()]
        if has_units:
            restart.append(Step("restart", ops.restart_script(w), arms=("workers",)))
        actions: list[Action] = [
            # Every worker group's program must resolve in its units' context before anything changes.
            Script((Step("check", context.resolve_programs(self.inv, self.host, app, skip_release=True)),
                    Step("check", rel.check(app)), Step("check", rel.previous_release(app)),
                    Step("check", rel.release_after(app, self.release)))),
            Lock(app, holder, self.force_unlock),
        ]
        if app.source.strategy == "archive":
            what = "" if self.archive else f"git archive {self.revision.commit[:12]}"
            actions.append(Upload("upload", self.archive, archive, arms=("remove release",), what=what))
        actions += [
            # Hooks before the switch fail the host like a build step: only the new release is removed.
            Script((Step("code", code, arms=("remove release",)), Step("shared", rel.link_shared(app, release)),
                    *([Step("build", rel.build(self.inv, self.host, app, release, app.build, plan=dry))]
                      if app.build else []),
                    *self.hooks("after_build", release, dry), *self.hooks("before_switch", release, dry))),
            Script(tuple(publish), commits=not restart),
        ]
        if restart:
            actions.append(Script(tuple(restart), rolling=True, commits=True))
        actions += [
            Script((Step("cleanup", rel.cleanup(app)),
                    Step("cleanup", rel.log_revision(app, self._log_line(release))))),
        ]
        after_restart = self.hooks("after_restart", release, dry)
        if after_restart:
            # After the restart committed the release and after it is logged: a failing hook is
            # reported (the host fails) but undoes nothing; the workers keep running.
            actions.append(Script(tuple(after_restart)))
        actions.append(Unlock())
        recovery = [Recovery("switch back", rel.switch_back(app, release, previous)),
                    Recovery("units", self.workers.install_script(self.template_dirs) if unit_changes is None
                             else "(units as the inventory wants them)")]
        if w.units:
            recovery.append(Recovery("workers", ops.recover_script(w)))
        recovery.append(Recovery("remove release", rel.remove_release(app, release)))
        return Plan(tuple(actions), tuple(recovery))

    def hooks(self, point: str, release: str, dry: bool = False) -> list[Step]:
        """A hook point's steps: each hook run in the release the way a build step is."""
        return [Step(f"{point} (once)" if h.once else point,
                     rel.build(self.inv, self.host, self.app, release, [h.command], plan=dry))
                for h in self.app.hooks.at(point, self.once_host)]

    def plan(self, unit_changes: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
        """Every stage with the commands it sends, in order: what --dry-run prints."""
        holder = Holder.me(self.revision.commit, self.release)
        return describe(self.build_plan({}, holder, list(unit_changes) or ["(units as rendered)"]))

    def _log_line(self, release: str) -> str:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        at = self.revision.commit or "the hosts' mirror"
        return (f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.revision.ref} (at {at}) "
                f"deployed as release {release} by {who}")

    def run(self, session: Session, report: HostReport, out: Reporter) -> None:
        report.release = self.release
        report.revision = self.revision.commit or None
        holder = Holder.me(self.revision.commit, self.release)
        ex = Execution(session, self.host, report, out, self.restart_gate, self.timeout or self.app.timeout)

        def build(facts: Facts) -> Plan:
            report.release = facts.get("release", self.release)
            if "revision" in facts:
                report.revision = facts["revision"]
            return self.build_plan(facts, holder)

        if not ex.run(build) and any(st.name.startswith("after_restart") and st.status == "failed"
                                     for st in report.stages):
            report.error = f"{report.error} (release {report.release} is live; its workers keep running)"


def deploy_host(deploys: Sequence[Deploy], reports: Sequence[HostReport], out: Reporter) -> bool:
    """A host's deploys (one per app) over one connection; False if any failed."""
    first = deploys[0]
    timeout = first.timeout or max(d.app.timeout for d in deploys)
    return on_host(first.inv.hosts[first.host], deploys, reports, out, lambda s, d, r: d.run(s, r, out), timeout)


def unit_changes(d: Deploy) -> list[str]:
    """Read the host's current units (read only) and diff them with the rendered ones."""
    session = connect(d.inv.hosts[d.host], d.timeout or d.app.timeout)
    try:
        return ops.changes(session, d.workers, d.template_dirs)
    finally:
        session.close()
