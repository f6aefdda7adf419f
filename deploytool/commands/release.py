"""Commands for the Capistrano layout under deploy_to: releases/, shared/, current, repo/,
revisions.log and the deploy lock. Pure builders: they return shell text or argv; nothing runs here."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from deploytool import context
from deploytool.commands import config
from deploytool.inventory import App, Inventory
from deploytool.remote import join

q = shlex.quote

LOCK_BUSY = 75  # EX_TEMPFAIL: a deploy holds the lock
STAGE = "@@deploytool-stage"  # a line announcing the next stage of a multi-stage script
PREVIOUS = "@@deploytool-previous"  # a line naming the release `current` pointed to before
PREVIOUS_REVISION = "@@deploytool-previous_revision"  # ... and the revision that release records
REVISION = "@@deploytool-revision"  # the commit a host resolved (git strategy)
RELEASE = "@@deploytool-release"  # the release name the host settled on
LAST = "@@deploytool-last"  # the host's record of the last deploy or rollback (host_runner: .deploy.last)
# Plain lines (no markers: they are read from a whole output, not as facts) of running_releases().
CWD = "deploytool-cwd"  # UNIT PATH: the working directory of a unit's main process (the release it runs)
CURRENT = "deploytool-current"  # the release directory `current` points to


def stage(name: str) -> str:
    return f"echo {q(STAGE + ' ' + name)}"


@dataclass(frozen=True)
class Layout:
    """Capistrano's paths under an app's deploy_to (`shared` and `current` are the App's own)."""

    app: App

    @property
    def deploy_to(self) -> str:
        return self.app.deploy_to

    @property
    def releases(self) -> str:
        return f"{self.deploy_to}/releases"

    @property
    def shared(self) -> str:
        return self.app.shared_path

    @property
    def current(self) -> str:
        return self.app.current_path

    @property
    def repo(self) -> str:
        return f"{self.deploy_to}/repo"

    @property
    def lock(self) -> str:
        return f"{self.deploy_to}/.deploy.lock"

    @property
    def flock(self) -> str:
        return f"{self.deploy_to}/.deploy.flock"

    @property
    def last_run(self) -> str:
        return f"{self.deploy_to}/.deploy.last"

    @property
    def revisions_log(self) -> str:
        return f"{self.deploy_to}/revisions.log"

    def release(self, name: str) -> str:
        return f"{self.releases}/{name}"


def check(app: App) -> str:
    """Directories exist and every linked file is already in shared/ (listing all missing ones)."""
    lay = Layout(app)
    dirs = [lay.releases, lay.shared, *(f"{lay.shared}/{d}" for d in app.linked_dirs)]
    dirs += sorted({f"{lay.shared}/{f.rsplit('/', 1)[0]}" for f in app.linked_files if "/" in f})
    lines = [f"mkdir -p {' '.join(q(d) for d in dirs)}"]
    if app.linked_files:
        # Every missing file named at once, each with the command that puts it in place.
        lines.append("missing=0")
        lines += [f"[ -e {q(lay.shared + '/' + f)} ] || {{ missing=1; printf '%s\\n' {q(missing_text(app, f))} >&2; }}"
                  for f in app.linked_files]
        lines.append('[ "$missing" = 0 ] || exit 1')
    return "\n".join(lines)


def missing_text(app: App, name: str) -> str:
    return (f"linked file missing: {app.shared_path}/{name} (upload it: "
            f"{config.invocation(app, name)})")


def release_after(app: App, proposed: str) -> str:
    """Print the release name to use: the proposed UTC timestamp, or one second after the newest
    release if that is not older (two deploys within one second, or this machine's clock behind)."""
    lay = Layout(app)
    return (
        f"r={q(proposed)}; last=$(ls -1 {q(lay.releases)} | grep -E '^[0-9]{{14}}$' | sort | tail -n 1); "
        'if [ -n "$last" ] && ! expr "$r" \\> "$last" >/dev/null; then '
        "r=$(date -u -d \"$(echo \"$last\" | sed -E 's/(....)(..)(..)(..)(..)(..)/\\1-\\2-\\3 \\4:\\5:\\6/') "
        "UTC + 1 second\" +%Y%m%d%H%M%S); fi; "
        f'echo {RELEASE} "$r"'
    )


def unpack_archive(app: App, release: str, archive: str, revision: str) -> str:
    lay = Layout(app)
    path = lay.release(release)
    return (
        f"mkdir {q(path)} && tar -xzf {q(archive)} -C {q(path)} && rm -f {q(archive)} && "
        f"printf '%s\\n' {q(revision)} > {q(path)}/REVISION"
    )


def git_export(app: App, release: str, revision: str) -> str:
    """Capistrano's git strategy: a mirror under repo/, updated, then the revision exported."""
    lay = Layout(app)
    path = lay.release(release)
    url = app.source.repository
    return (
        f"if [ -d {q(lay.repo)}/objects ]; then git -C {q(lay.repo)} remote update --prune >/dev/null; "
        f"else git clone --mirror --quiet {q(url)} {q(lay.repo)}; fi && "
        f"commit=$(git -C {q(lay.repo)} rev-parse --verify {q(revision + '^{commit}')}) && "
        f"mkdir {q(path)} && git -C {q(lay.repo)} archive \"$commit\" | tar -x -C {q(path)} && "
        f"printf '%s\\n' \"$commit\" > {q(path)}/REVISION && echo {REVISION} \"$commit\""
    )


def link_shared(app: App, release: str) -> str:
    lay = Layout(app)
    path = lay.release(release)
    cmds: list[str] = []
    for d in app.linked_dirs:
        target = f"{path}/{d}"
        parent = target.rsplit("/", 1)[0]
        cmds.append(f"rm -rf {q(target)} && mkdir -p {q(parent)} && ln -s {q(lay.shared + '/' + d)} {q(target)}")
    for f in app.linked_files:
        target = f"{path}/{f}"
        parent = target.rsplit("/", 1)[0]
        cmds.append(f"mkdir -p {q(parent)} && ln -sfn {q(lay.shared + '/' + f)} {q(target)}")
    return " && ".join(cmds) or "true"


def build(inv: Inventory, host: str, app: App, release: str, commands: Sequence[str], *,
          plan: bool = False) -> str:
    """Each build step as `sh -ec STEP` in the new release, in the app's runtime context (the units'
    user, PATH and environment files, not the SSH login's), after writing the app's environment file.
    `plan`: the text a dry run shows, where that file is named, never its content."""
    if not commands:
        return "true"
    path = Layout(app).release(release)
    steps = [join(context.in_context(inv, host, app, ["/bin/sh", "-ec", c], cwd=path)) for c in commands]
    env = context.env_files_plan(app) if plan else context.env_files_script(app)
    return env + "\n" + " && ".join(steps)


def switch_current(app: App, release: str) -> str:
    """Atomic: a temporary symlink renamed over `current` (never `ln -sfn`, which unlinks first)."""
    lay = Layout(app)
    tmp = f"{lay.deploy_to}/.current.{release}"
    return f"ln -sfn {q(lay.release(release))} {q(tmp)} && mv -T {q(tmp)} {q(lay.current)}"


def current_release() -> str:
    # Shell text yielding the release name `current` points to (empty on a first deploy).
    return "basename \"$(readlink current 2>/dev/null)\" 2>/dev/null"


def previous_release(app: App) -> str:
    # With the revision it runs: a failed deploy puts back the units of that revision's Procfile.
    return (f"echo {PREVIOUS} $(cd {q(app.deploy_to)} && {current_release()}); "
            f"echo {PREVIOUS_REVISION} $(cat {q(Layout(app).current)}/REVISION 2>/dev/null)")


def switch_back(app: App, release: str, previous: str) -> str:
    """After a failure: `current` back on the previous release if it was switched to `release`."""
    lay = Layout(app)
    if not previous:
        return "true"
    return (f"if [ \"$(readlink {q(lay.current)})\" = {q(lay.release(release))} ]; then "
            f"{switch_current(app, previous)}; fi")


def cleanup(app: App) -> str:
    """Keep the newest keep_releases releases; never the one `current` points to."""
    lay = Layout(app)
    return (
        f"cd {q(lay.deploy_to)} && cur=$({current_release()}) && "
        f"ls -1 releases | grep -E '^[0-9]{{14}}$' | sort -r | tail -n +{app.keep_releases + 1} | "
        f"while read -r r; do [ \"$r\" = \"$cur\" ] || rm -rf \"releases/$r\"; done"
    )


def remove_release(app: App, release: str) -> str:
    """Remove a release that failed before `current` pointed to it."""
    lay = Layout(app)
    path = lay.release(release)
    return (f"[ \"$(readlink {q(lay.current)})\" = {q(path)} ] || rm -rf {q(path)} "
            f"{q(lay.releases)}/.{q(release)}.tar.gz")


# The entries only a deploy_to has: purge() removes a directory only if it holds one of them (or nothing).
DEPLOY_ENTRIES = ("releases", "shared", "current", "revisions.log", ".deploy.flock")


def purge(app: App) -> str:
    """Remove the app's deploy_to with everything in it (releases, shared/ with its linked files, current,
    revisions.log, the lock files), as root in system mode (workers may own files in shared/). Refused
    while a deploy holds the lock (it is taken for the removal), and for a directory that does not look
    like a deploy_to (a typo must not remove /srv)."""
    lay = Layout(app)
    d = q(lay.deploy_to)
    rm = "rm" if app.systemd == "user" else "sudo -n rm"
    ours = " || ".join(f"[ -e {d}/{e} ]" for e in DEPLOY_ENTRIES)
    foreign = q(f"{lay.deploy_to}: not removed: it holds no releases, shared/ or current (not a deploy_to?)")
    busy = q(f"{lay.deploy_to}: not removed: a deploy holds its lock")
    return "\n".join([
        f"[ -e {d} ] || exit 0",
        f'{ours} || [ -z "$(ls -A {d})" ] || {{ echo {foreign} >&2; exit 1; }}',
        f"exec 9>>{q(lay.flock)} && flock -n 9 || {{ echo {busy} >&2; exit {LOCK_BUSY}; }}",
        f"{rm} -rf -- {d}",
    ])


def log_revision(app: App, line: str) -> str:
    return f"printf '%s\\n' {q(line)} >> {q(Layout(app).revisions_log)}"


def list_releases(app: App) -> str:
    """One line per release, `NAME REVISION`, then `current NAME`."""
    lay = Layout(app)
    return (
        f"cd {q(lay.deploy_to)} 2>/dev/null || exit 0; "
        f"for r in $(ls -1 releases 2>/dev/null | grep -E '^[0-9]{{14}}$' | sort -r); do "
        f"printf '%s %s\\n' \"$r\" \"$(head -n1 releases/$r/REVISION 2>/dev/null)\"; done; "
        f"echo \"current $({current_release()})\""
    )


def last_run(app: App) -> str:
    """Prints the record the host's plan runner left of the last deploy or rollback (one JSON line)."""
    return f"printf '%s %s\\n' {LAST} \"$(tr -d '\\n' < {q(Layout(app).last_run)} 2>/dev/null)\""


def running_releases(app: App, units: Sequence[str]) -> str:
    """Prints where `current` points and, per unit, its main process's working directory: the release
    it was started in (systemd resolves WorkingDirectory=current at start), whatever `current` says now.
    A process of another user cannot be read without privileges: its line is left empty."""
    lines = [f"printf '%s %s\\n' {CURRENT} \"$(readlink -f {q(Layout(app).current)})\""]
    if units:
        # `show` needs no privileges; one value per unit, in order (blank lines between them collapse).
        show = join(["systemctl", *(["--user"] if app.systemd == "user" else []), "show", "--property=MainPID",
                     "--value", *units])
        lines += [f"set -- $({show})",
                  f"for u in {' '.join(q(u) for u in units)}; do pid=${{1:-0}}; shift; "
                  f"printf '%s %s %s\\n' {CWD} \"$u\" "
                  f"\"$( [ \"$pid\" -gt 0 ] && readlink /proc/$pid/cwd 2>/dev/null)\"; done"]
    return "\n".join(lines)
