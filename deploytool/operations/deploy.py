"""The deploy flow on one host, Capistrano's stages made explicit, with the recovery Capistrano lacks:
a failed step leaves `current` on the old release, its workers running (never quiet), the lock freed.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploytool import context, procfile_groups
from deploytool.commands import release as rel
from deploytool.engine.lock import Holder, last_run_note
from deploytool.engine.plan import Action, Facts, Lock, Plan, Recovery, Script, Step, Unlock, Upload, describe
from deploytool.engine.runner import Job, Preview
from deploytool.errors import HostError, InputError
from deploytool.inventory import App, Inventory
from deploytool.operations import workers as ops
from deploytool.operations.workers import Workers
from deploytool.remote import Session
from deploytool.report import HostReport
from deploytool.source import Revision


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
    # This host runs the app's `once: true` hooks (migrations): one host per app and deploy.
    once_host: bool = False
    # The packed code's size, for a dry run's disk check (it packs but uploads nothing).
    archive_bytes: int | None = None

    @property
    def workers(self) -> Workers:
        return Workers(self.inv, self.host, self.app)

    def _remote_archive(self, release: str) -> str:
        return f"{rel.Layout(self.app).releases}/.{release}.tar.gz"

    def build_plan(self, facts: Facts, holder: Holder, dry: bool = False) -> Plan:
        """The deploy on this host, from what the host reported so far (`facts`: the release name it
        settled on, the release `current` pointed to before). `dry`: a plan to print, whose units stage
        says what it does instead of carrying the environment files' content.

        Workers are quieted right before they stop, in the (possibly rolling) restart round trip:
        quieting them early would leave a waiting host idle for the whole rolling restart. Running
        workers keep the code they loaded, so switching `current` first does not change what they run."""
        app, w = self.app, self.workers
        release = facts.get("release", self.release)
        previous = facts.get("previous", "")
        archive = self._remote_archive(release)
        if app.source.strategy == "archive":
            code = rel.unpack_archive(app, release, archive, self.revision.commit)
        else:
            code = rel.git_export(app, release, self.revision.ref)
        units = ops.SYNC_PLAN if dry else w.install_script(self.template_dirs)
        has_units = bool(w.units)
        publish = [Step("switch", rel.switch_current(app, release), arms=("switch back", "units", "workers"))]
        if has_units:
            publish.append(Step("units", units, arms=("units", "workers")))
        restart = [Step("quiet", c, arms=("workers",)) for c in w.quiet_commands()]
        if has_units:
            restart.append(Step("restart", ops.restart_script(w, dry), arms=("workers",)))
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
            # A canary's later waves stop here, their release staged, until the canary passed its soak.
            Script(tuple(publish), commits=not restart, held=True),
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
        back = self.previous_workers(facts, w)
        recovery = [Recovery("switch back", rel.switch_back(app, release, previous)),
                    Recovery("units", "(units as the inventory wants them)" if dry
                             else units if back is w else back.install_script(self.template_dirs))]
        if back.units:
            recovery.append(Recovery("workers", ops.recover_script(back)))
        recovery.append(Recovery("remove release", rel.remove_release(app, release)))
        return Plan(tuple(actions), tuple(recovery))

    def previous_workers(self, facts: Facts, w: Workers) -> Workers:
        """The workers as the release `current` pointed to before want them: what a failure puts back.
        They differ from this deploy's only in the commands of `procfile:` groups, read from the
        Procfile at that release's revision; if it cannot be read, the host fails before any change."""
        if not facts.get("previous") or self.app.name not in procfile_groups.used(self.inv):
            return w
        try:
            inv, app = procfile_groups.as_of(self.inv, self.host, self.app, facts.get("previous_revision", ""))
        except InputError as e:
            raise HostError(f"{self.host}: release {facts['previous']} (current): its units could not be put "
                            f"back if this deploy failed: {e}") from None
        return Workers(inv, self.host, app)

    def hooks(self, point: str, release: str, dry: bool = False) -> list[Step]:
        """A hook point's steps: each hook run in the release the way a build step is."""
        return [Step(f"{point} (once)" if h.once else point,
                     rel.build(self.inv, self.host, self.app, release, [h.command], plan=dry))
                for h in self.app.hooks.at(point, self.once_host)]

    def plan(self) -> list[tuple[str, list[str]]]:
        """Every stage with the commands it sends, in order: what --dry-run prints."""
        return describe(self.build_plan({}, Holder.me(self.revision.commit, self.release), dry=True))

    def _log_line(self, release: str) -> str:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        at = self.revision.commit or "the hosts' mirror"
        return (f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.revision.ref} (at {at}) "
                f"deployed as release {release} by {who}")

    def job(self) -> Job:
        """This deploy as the engine runs it: the plan, rebuilt from what the host reports; the release
        and revision the host settled on in the report; for a dry run, the units and instances it would
        change, read from the host."""
        holder = Holder.me(self.revision.commit, self.release)

        def note(facts: Facts, report: HostReport) -> None:
            report.release = facts.get("release", self.release)
            report.revision = facts.get("revision") or self.revision.commit or None
            if facts.get("previous"):
                report.details["previous_release"] = facts["previous"]
            last = last_run_note(self.host, self.app.name, facts.get("last", ""))
            if last:
                report.details["last_deploy"] = last

        def finish(report: HostReport) -> None:
            if report.status == "failed" and any(st.name.startswith("after_restart") and st.status == "failed"
                                                 for st in report.stages):
                report.error = f"{report.error} (release {report.release} is live; its workers keep running)"

        def preview(session: Session) -> Preview:
            # deploytool.operations.check builds on Deploy: imported here, where a dry run needs it.
            from deploytool.operations.check import would_fail

            size = self.archive.stat().st_size if self.archive else self.archive_bytes
            return Preview(changes=ops.preview(session, self.workers, self.template_dirs, starts=True),
                           problems=would_fail(session, self.inv, self.host, self.app, self.template_dirs, size))

        once = ", runs the app's once hooks" if self.once_host and self.app.hooks.at_once() else ""
        return Job(self.host, self.app, lambda facts: self.build_plan(facts, holder), note=note, finish=finish,
                   preview=preview, dry_plan=lambda seen: self.build_plan(seen.facts, holder, dry=True),
                   title=f"release {self.release}, revision {self.revision.ref} "
                         f"({self.revision.commit or 'resolved on the host'}){once}")
