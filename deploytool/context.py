"""An app's runtime context on a host: what its worker units see, and what every command deploytool runs
for the app there (build steps, quiet, requeue, `fab run`, program checks) sees too.

A command is never run in the SSH user's login shell, whose PATH (rbenv, pyenv, asdf shims in
~/.profile) and environment differ from the units'. It runs as a transient systemd service with the
unit's own properties: `systemd-run --wait --pipe` as the worker's user, in the release, with the
same environment files, PATH and umask. Its output streams back and its exit code is the command's.

Secrets never reach argv: environment values come only from EnvironmentFile= (the groups' files of
deploytool.units, and an app-level one beside them); only PATH (not a secret) is passed with --setenv.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploytool import systemd_quote, units
from deploytool.commands import unitfiles
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.kinds import KINDS
from deploytool.remote import Expand, join
from deploytool.units import EnvFile

# The app-level environment file, beside the groups' (units.environment_dir): for the app's commands
# that belong to no group (build, `fab run` without --group). A group name cannot start with `_`.
APP_ENV = "_app.env"
# Marks the line naming the program a worker group's command resolves to (see resolve_programs).
PROGRAM = "@@deploytool-program"
NOT_FOUND = "-"
HOME = "$HOME/"  # how units.environment_dir names a path in the user's home (user mode)


@dataclass(frozen=True)
class Runtime:
    """The properties a worker unit runs with, as systemd-run takes them."""

    user_mode: bool
    user: str | None  # system mode: User= (None in user mode: the user manager's own user)
    working_directory: str
    env_files: tuple[str, ...]  # absolute paths, loaded in order (a later file wins)
    home_env_file: str | None  # user mode: deploytool's file, relative to the user's $HOME, loaded first
    path: str | None  # PATH, or None: systemd's default, as in the units
    umask: str | None = None  # None: systemd's default


def environment(app: App) -> dict[str, str]:
    """The app-level environment: PATH from `path:`, the app's `environment:`, REDIS_URL unless set
    (what every group's file holds, without the groups' own values)."""
    path = units.search_path(app)
    env = {**({"PATH": path} if path else {}), **app.variables}
    if app.redis:
        env.setdefault("REDIS_URL", app.redis[0])
    return env


def app_env_files(app: App) -> list[EnvFile]:
    """The app-level environment file, if the app has any environment (like the groups' files)."""
    env = environment(app)
    return [EnvFile(f"{units.environment_dir(app)}/{APP_ENV}", systemd_quote.env_file(env))] if env else []


def env_files_script(app: App) -> str:
    """Shell text writing the app-level environment file where it differs (before a build: the units'
    sync, which also writes it, comes later in a deploy)."""
    return unitfiles.write_env_files(app, app_env_files(app))


def env_files_plan(app: App) -> str:
    """What a dry run shows instead of env_files_script: the file, never its content."""
    files = app_env_files(app)
    return "\n".join(f"# {f.name}: (environment file, written if changed; content not shown)" for f in files) \
        or "true"


def runtime(inv: Inventory, host: str, app: App, group: WorkerGroup | None = None) -> Runtime:
    """The context of `group`'s units on `host` (units.runtime), or with no group the app's: the host's
    SSH user as User=, the app-level environment file."""
    if group is not None:
        rt = units.runtime(inv, host, app, group)
        user, files, umask = rt.user, rt.environment_files, rt.umask
    else:
        user = None if app.systemd == "user" else inv.hosts[host].user
        files = (*(f.path for f in app_env_files(app)), *((app.env_file_path,) if app.env_file_path else ()))
        umask = units.UMASK
    home = [f.removeprefix(HOME) for f in files if f.startswith(HOME)]
    if len(home) > 1 or (home and not files[0].startswith(HOME)):
        raise ValueError(f"only the first environment file may be in the home directory: {files}")
    return Runtime(
        user_mode=app.systemd == "user",
        user=user,
        working_directory=app.current_path,
        env_files=tuple(f for f in files if not f.startswith(HOME)),
        home_env_file=home[0] if home else None,
        path=units.search_path(app, group),
        umask=umask,
    )


def wrap(rt: Runtime, argv: Sequence[str], *, cwd: str | None = None, tty: bool = False,
         tolerant: bool = False) -> list[str]:
    """`argv` run in the context `rt`: as a transient service waited for, stdio passed through (`tty`:
    a pseudo-terminal, for interactive commands), removed afterwards even if it failed.

    `cwd` replaces the working directory (a build runs in its new release; an Expand, filled in on the
    host: the release a running worker works in). `tolerant`: a missing working directory or
    environment file is no error (a check before the first deploy)."""
    if not argv:
        raise ValueError("no command to run")
    opt = "-" if tolerant else ""
    where = f"--property=WorkingDirectory={opt}{cwd or rt.working_directory}"
    props = [Expand(where) if isinstance(cwd, Expand) else where]
    props += [f"--property=EnvironmentFile={opt}{f}" for f in rt.env_files]
    if rt.umask:
        props.append(f"--property=UMask={rt.umask}")
    if rt.path:
        props.append(f"--setenv=PATH={rt.path}")
    # systemd-run looks a bare program name up in ITS caller's PATH (the login shell's, or sudo's
    # secure_path) before the service starts: an absolute `env` makes the lookup happen inside the
    # service, in the context's own PATH.
    command = ["--", "/usr/bin/env", *argv]
    flags = ["--quiet", "--wait", "--collect", "--pty" if tty else "--pipe"]
    if not rt.user_mode:
        return ["sudo", "-n", "systemd-run", *flags, f"--uid={rt.user}", *props, *command]
    if rt.home_env_file is None:
        return ["systemd-run", "--user", *flags, *props, *command]
    # systemd-run wants absolute paths and expands no `~` or `%h`: the home is only known on the host.
    run = f'f=$1; shift; exec systemd-run --user "--property=EnvironmentFile={opt}$HOME/$f" "$@"'
    return ["sh", "-c", run, "sh", rt.home_env_file, *flags, *props, *command]


def in_context(inv: Inventory, host: str, app: App, argv: Sequence[str], group: WorkerGroup | None = None,
               *, cwd: str | None = None, tty: bool = False, tolerant: bool = False) -> list[str]:
    """`argv` as deploytool runs it for `app` on `host`: in the context of `group`'s units, or of the
    app's commands without a group."""
    return wrap(runtime(inv, host, app, group), argv, cwd=cwd, tty=tty, tolerant=tolerant)


def program(app: App, group: WorkerGroup) -> list[str]:
    """The group's program argv as its units run it (the kind's, or `command`), with a path relative to
    the release made absolute under `current`, as the units write it."""
    argv = list(group.command) if group.command else list(KINDS[group.kind].program)
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        argv[0] = str(PurePosixPath(app.current_path) / argv[0])
    return argv


# Prints `@@deploytool-program GROUP PATH` (PATH `-` when nothing is found, with an error on stderr).
# Only an executable file counts: systemd cannot start a shell builtin or a directory.
_RESOLVE = (
    'if p=$(command -v "$2") && case $p in /*) [ -f "$p" ] && [ -x "$p" ];; *) false;; esac; '
    'then echo "$0 $1 $p"; '
    f'else echo "$0 $1 {NOT_FOUND}"; '
    "echo \"worker group $1: program $2 not found (PATH=$PATH, as the group's units see it)\" >&2; "
    "exit 127; fi"
)


def resolve_programs(inv: Inventory, host: str, app: App, groups: Sequence[WorkerGroup] | None = None,
                     *, skip_release: bool = False, marker: str = PROGRAM) -> str:
    """Shell text showing, per worker group, which program its command resolves to in the group's own
    context (`command -v` inside the same systemd-run as its units get); fails, after checking every
    group, if any resolves to nothing. `skip_release`: leave out programs inside the release (before a
    deploy, the new release is not there yet to check). `marker` starts each line printed."""
    checks = []
    for g in inv.groups_on(host, app) if groups is None else groups:
        name = program(app, g)[0]
        if skip_release and name.startswith(app.current_path + "/"):
            continue
        argv = ["/bin/sh", "-c", _RESOLVE, marker, g.name, name]
        checks.append(wrap(runtime(inv, host, app, g), argv, tolerant=True))
    if not checks:
        return "true"
    # The first line names the check when it fails (deploytool.remote.script quotes it).
    lines = ["unresolved=0  # each worker group's program, resolved in its units' context",
             *(f"{join(c)} || unresolved=1" for c in checks), '[ "$unresolved" = 0 ]']
    return "\n".join(lines)


def parse_programs(stdout: str, marker: str = PROGRAM) -> dict[str, str | None]:
    """group → the program's path, or None where it resolves to nothing (from resolve_programs' output)."""
    found: dict[str, str | None] = {}
    for line in stdout.splitlines():
        first, _, rest = line.partition(" ")
        if first == marker:
            group, _, path = rest.partition(" ")
            found[group] = None if path == NOT_FOUND else path
    return found
