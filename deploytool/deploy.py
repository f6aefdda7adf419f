"""The deploy flow on one host, Capistrano's stages made explicit, with the recovery Capistrano lacks:
a failed step leaves `current` on the old release, its workers running (never quiet), the lock freed.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from deploytool import context, lock
from deploytool import workers as ops
from deploytool.commands import release as rel
from deploytool.errors import HostError
from deploytool.hostwork import on_host
from deploytool.inventory import App, Inventory
from deploytool.lock import Holder
from deploytool.remote import Result, Session, connect, join, last_lines, script
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

    @property
    def workers(self) -> Workers:
        return Workers(self.inv, self.host, self.app)

    def _remote_archive(self) -> str:
        return f"{rel.Layout(self.app).releases}/.{self.release}.tar.gz"

    def phases(self, holder: Holder, unit_changes: Sequence[str] | None = None) -> list[Phase]:
        """The deploy as five round trips, each a list of (stage, command); an upload goes before the
        second. With `unit_changes` (a dry run), the units stage shows that diff instead of its script.

        Workers are quieted right before they stop, in the (possibly rolling) restart phase: quieting
        them early would leave a waiting host idle for the whole rolling restart. Running workers keep
        the code they loaded, so switching `current` first does not change what they run."""
        app, w = self.app, self.workers
        if app.source.strategy == "archive":
            code = rel.unpack_archive(app, self.release, self._remote_archive(), self.revision.commit)
        else:
            code = rel.git_export(app, self.release, self.revision.ref)
        units = (self.workers.install_script(self.template_dirs) if unit_changes is None
                 else "\n".join(unit_changes))
        publish = [("switch", rel.switch_current(app, self.release))]
        restart = [("quiet", c) for c in w.quiet_commands()]
        if w.units or unit_changes is not None:
            publish.append(("units", units))
            restart.append(("restart", ops.restart_script(w)))
        return [
            # Every worker group's program must resolve in its units' context before anything changes.
            Phase("prepare", [("check", context.resolve_programs(self.inv, self.host, app, skip_release=True)),
                              ("check", rel.check(app)), ("check", rel.previous_release(app)),
                              ("lock", rel.lock(app, holder.json())), ("lock", rel.release_after(app, self.release))]),
            Phase("release", [("code", code), ("shared", rel.link_shared(app, self.release))]
                  + ([("build", rel.build(self.inv, self.host, app, self.release, app.build,
                                          plan=unit_changes is not None))] if app.build else [])),
            Phase("publish", publish),
            Phase("restart", restart),
            Phase("finish", [("cleanup", rel.cleanup(app)), ("cleanup", rel.log_revision(app, self._log_line())),
                             ("unlock", join(rel.unlock(app)))]),
        ]

    def plan(self, unit_changes: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
        """Every stage with the commands it sends, in order: what --dry-run prints."""
        holder = Holder.me(self.revision.commit, self.release)
        stages: list[tuple[str, list[str]]] = []
        for phase in self.phases(holder, list(unit_changes) or ["(units as rendered)"]):
            if phase.name == "release" and self.app.source.strategy == "archive":
                local = self.archive.name if self.archive else f"git archive {self.revision.commit[:12]}"
                stages.append(("upload", [f"upload {local} -> {self._remote_archive()}"]))
            for name, command in phase.stages:
                if stages and stages[-1][0] == name:
                    stages[-1][1].append(command)
                else:
                    stages.append((name, [command]))
        return stages

    def _log_line(self) -> str:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        at = self.revision.commit or "the hosts' mirror"
        return (f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.revision.ref} (at {at}) "
                f"deployed as release {self.release} by {who}")

    def run(self, session: Session, report: HostReport, out: Reporter) -> None:
        report.release = self.release
        report.revision = self.revision.commit or None
        holder = Holder.me(self.revision.commit, self.release)
        prepare = self.phases(holder)[0]
        clock = out.clock(report)
        seen: dict[str, str] = {}
        locked = published = False
        d = self  # with the release name the host settles on, once it has

        def on_line(line: str) -> None:
            marker, _, value = line.partition(" ")
            if marker == rel.STAGE:
                clock.begin(value)
            elif marker in (rel.PREVIOUS, rel.REVISION, rel.RELEASE):
                seen[marker] = value.strip()

        def send(phase: Phase, allow: tuple[int, ...] = ()) -> Result:
            r = session.run(phase.script(), phase.name, check=False, on_line=on_line)
            # Name the stage that failed; stderr's last lines name its command ("failed: ...").
            stage = clock.current.name if clock.current else phase.name
            clock.end("ok" if r.exited == 0 else "failed")
            if r.exited != 0 and r.exited not in allow:
                raise HostError(f"{self.host}: {stage}: exit {r.exited}: {last_lines(r.stderr or r.stdout)}")
            return r

        try:
            r = send(prepare, allow=(rel.LOCK_BUSY,))
            if r.exited == rel.LOCK_BUSY:
                lock.clear_stale(session, self.app, r.stdout, self.force_unlock)
                send(prepare)
            locked = True
            # The host may have named the release later than proposed (see rel.release_after).
            if seen[rel.RELEASE] != self.release:
                d = replace(self, release=seen[rel.RELEASE])
            _, release, publish, restart, finish = d.phases(holder)
            report.release = d.release
            if self.archive is not None:
                with out.stage(report, "upload"):
                    session.put(self.archive, d._remote_archive(), "upload")
            send(release)
            if rel.REVISION in seen:
                report.revision = seen[rel.REVISION]
            published = True
            send(publish)
            if restart.stages:
                with self.restart_gate or contextlib.nullcontext():
                    send(restart)
        except HostError as e:
            report.status, report.error = "failed", out.redact(str(e))
            if locked:
                d._recover(session, report, out, seen.get(rel.PREVIOUS, ""), published)
            return
        try:
            send(finish)
        except HostError as e:
            # The release is live and its workers run; only cleanup, the log or the unlock failed.
            report.status, report.error = "failed", out.redact(str(e))
            with contextlib.suppress(HostError):
                session.run(join(rel.unlock(self.app)), "unlock")

    def _recover(self, session: Session, report: HostReport, out: Reporter, previous: str,
                 published: bool) -> None:
        """Put the host back as it was, in one round trip: `current` on the previous release, the units
        as the inventory wants them, workers running (never left quiet or stopped), the failed release
        removed, the lock released."""
        app, w = self.app, self.workers
        steps: list[str] = []
        if published:
            steps += [rel.switch_back(app, self.release, previous), w.install_script(self.template_dirs)]
            if w.units:
                steps.append(ops.recover_script(w))
        steps += [rel.remove_release(app, self.release), join(rel.unlock(app))]
        with out.stage(report, "recover") as st:
            r = session.run(script(*steps), "recover", check=False)
            if r.exited != 0:
                st.status = "failed"
                report.error = f"{report.error}; recovery failed: {r.stderr.strip()}"


@dataclass(frozen=True)
class Phase:
    """Stages sent in one round trip; each announces itself so its duration is measured on its own."""

    name: str
    stages: list[tuple[str, str]]

    def script(self) -> str:
        commands: list[str] = []
        last = None
        for stage, command in self.stages:
            if stage != last:
                commands.append(rel.stage(stage))
                last = stage
            commands.append(command)
        return script(*commands)


def deploy_host(deploys: Sequence[Deploy], reports: Sequence[HostReport], out: Reporter) -> bool:
    """A host's deploys (one per app) over one connection; False if any failed."""
    first = deploys[0]
    return on_host(first.inv.hosts[first.host], deploys, reports, out, lambda s, d, r: d.run(s, r, out))


def unit_changes(d: Deploy) -> list[str]:
    """Read the host's current units (read only) and diff them with the rendered ones."""
    session = connect(d.inv.hosts[d.host])
    try:
        return ops.changes(session, d.workers, d.template_dirs)
    finally:
        session.close()
