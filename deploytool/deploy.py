"""The deploy flow on one host, Capistrano's stages made explicit, with the recovery Capistrano lacks:
a failed step leaves `current` on the old release, its workers running (never quiet), the lock freed.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploytool import workers as ops
from deploytool.commands import release as rel
from deploytool.errors import HostError
from deploytool.inventory import App, Inventory
from deploytool.remote import Session, connect, join
from deploytool.report import HostReport, Reporter
from deploytool.source import Revision
from deploytool.workers import Workers


def release_name(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock; recorded in it so a second deploy can name the holder."""

    user: str
    controller: str
    pid: int
    revision: str
    release: str
    started: str

    @classmethod
    def me(cls, revision: str, release: str) -> Holder:
        return cls(getpass.getuser(), socket.gethostname(), os.getpid(), revision, release,
                   datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text.strip().splitlines()[-1])
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def gone(self) -> bool:
        """Provably dead: it ran on this machine and its process no longer exists."""
        if self.controller != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return (f"{self.user}@{self.controller} pid {self.pid} since {self.started} "
                f"(release {self.release}, revision {self.revision[:12] or '?'})")


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

    @property
    def workers(self) -> Workers:
        return Workers(self.inv, self.host, self.app)

    def plan(self, unit_changes: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
        """Every stage with the commands it sends, in order: what --dry-run prints. The units stage is
        shown as the diff of the units (`unit_changes`) rather than the script that writes them."""
        app, w = self.app, self.workers
        lay = rel.Layout(app.deploy_to)
        holder = Holder.me(self.revision.commit, self.release)
        if self.archive is not None:
            remote_archive = f"{lay.releases}/.{self.release}.tar.gz"
            code = [f"upload {self.archive.name} -> {remote_archive}",
                    rel.unpack_archive(app, self.release, remote_archive, self.revision.commit)]
        else:
            code = [rel.git_export(app, self.release, self.revision.ref)]
        stages = [
            ("check", [rel.check(app)]),
            ("lock", [rel.lock(app, holder.json())]),
            ("code", code),
            ("shared", [rel.link_shared(app, self.release)]),
            ("build", [rel.build(app, self.release, app.build)] if app.build else []),
            ("quiet", w.quiet_commands()),
            ("switch", [rel.switch_current(app, self.release)]),
            ("units", ["\n".join(unit_changes or ["install the rendered units"]),
                       join(["systemctl", "enable", w.target, *w.units])]),
            ("restart", [*w.quiet_commands(), ops.restart_script(w)] if w.units else []),
            ("cleanup", [f"{rel.cleanup(app)}\n{rel.log_revision(app, self._log_line())}"]),
            ("unlock", [join(rel.unlock(app))]),
        ]
        return [(name, cmds) for name, cmds in stages if cmds]

    def _log_line(self) -> str:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        at = self.revision.commit or "the hosts' mirror"
        return (f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.revision.ref} (at {at}) "
                f"deployed as release {self.release} by {who}")

    def run(self, session: Session, report: HostReport, out: Reporter) -> None:
        app, w = self.app, self.workers
        lay = rel.Layout(app.deploy_to)
        report.release = self.release
        report.revision = self.revision.commit or None
        previous: str | None = None
        locked = quieted = switched = False
        try:
            with out.stage(report, "check"):
                session.run(rel.check(app), "check")
                previous = session.run(f"cd {lay.deploy_to} && {rel.current_release()}", "check").stdout.strip()
            with out.stage(report, "lock"):
                self._lock(session)
                locked = True
            with out.stage(report, "code"):
                if self.archive is not None:
                    remote_archive = f"{lay.releases}/.{self.release}.tar.gz"
                    session.put(self.archive, remote_archive, "code")
                    session.run(rel.unpack_archive(app, self.release, remote_archive, self.revision.commit),
                                "code")
                else:
                    report.revision = session.run(rel.git_export(app, self.release, self.revision.ref),
                                                  "code").stdout.strip()
            with out.stage(report, "shared"):
                session.run(rel.link_shared(app, self.release), "shared")
            if app.build:
                with out.stage(report, "build"):
                    session.run(rel.build(app, self.release, app.build), "build")
            if w.quiet_commands():
                with out.stage(report, "quiet"):
                    quieted = True
                    ops.quiet(session, w)
            with out.stage(report, "switch"):
                session.run(rel.switch_current(app, self.release), "switch")
                switched = True
            with out.stage(report, "units"):
                report.details["units_changed"] = ops.install(session, w, self.template_dirs)
            with out.stage(report, "restart"):
                ops.restart(session, w)
                quieted = False
            with out.stage(report, "cleanup"):
                session.run(f"{rel.cleanup(app)}\n{rel.log_revision(app, self._log_line())}", "cleanup")
        except HostError as e:
            report.status, report.error = "failed", out.redact(str(e))
            # Without the lock, the host belongs to another deploy (or is untouched): leave it alone.
            if locked:
                self._recover(session, report, out, previous, quieted, switched)
        finally:
            if locked:
                try:
                    session.run(join(rel.unlock(app)), "unlock")
                except HostError as e:
                    report.status = "failed"
                    report.error = (report.error or "") + f"; {e}"

    def _lock(self, session: Session) -> None:
        holder = Holder.me(self.revision.commit, self.release)
        for attempt in (1, 2):
            r = session.run(rel.lock(self.app, holder.json()), "lock", check=False)
            if r.exited == 0:
                return
            if r.exited != rel.LOCK_BUSY:
                raise HostError(f"{self.host}: lock: exit {r.exited}: {r.stderr.strip()}")
            other = Holder.parse(r.stdout)
            if attempt == 1 and (self.force_unlock or (other is not None and other.gone())):
                session.run(join(rel.unlock(self.app)), "lock")
                continue
            who = other.describe() if other else "an unknown holder"
            raise HostError(
                f"{self.host}: lock: {self.app.name} is being deployed by {who}; "
                "if that deploy died, clear it with --force-unlock"
            )

    def _recover(self, session: Session, report: HostReport, out: Reporter, previous: str | None,
                 quieted: bool, switched: bool) -> None:
        """Put the host back as it was: old release current, its workers running, new release gone."""
        app, w = self.app, self.workers
        steps: list[tuple[str, Callable[[], object]]] = []
        if switched and previous:
            steps.append(("switch back", lambda: session.run(rel.switch_current(app, previous), "recover")))
            steps.append(("units", lambda: ops.install(session, w, self.template_dirs, stage="recover")))
        if switched or quieted:
            # Quiet workers only run again after a restart (Sidekiq cannot be un-quieted).
            steps.append(("restart", lambda: ops.recover(session, w)))
        steps.append(("remove release", lambda: session.run(rel.remove_release(app, self.release), "recover")))
        for name, step in steps:
            try:
                with out.stage(report, f"recover: {name}"):
                    step()
            except HostError as e:
                report.error = f"{report.error}; recovery failed: {e}"


def deploy_host(deploys: Sequence[Deploy], reports: Sequence[HostReport], out: Reporter) -> bool:
    """A host's deploys (one per app) over one connection; False if any failed."""
    first = deploys[0]
    try:
        with out.stage(reports[0], "connect"):
            session = connect(first.inv.hosts[first.host])
    except HostError as e:
        for r in reports:
            r.status, r.error = "failed", str(e)
        return False
    try:
        for d, r in zip(deploys, reports, strict=True):
            d.run(session, r, out)
    finally:
        for r in reports:
            r.commands, r.connections = session.commands, 1
        session.close()
    return all(r.status == "ok" for r in reports)


def unit_changes(d: Deploy) -> list[str]:
    """Read the host's current units (read only) and diff them with the rendered ones."""
    session = connect(d.inv.hosts[d.host])
    try:
        return ops.unit_diff(ops.installed(session, d.workers), d.workers.rendered(d.template_dirs))
    finally:
        session.close()
