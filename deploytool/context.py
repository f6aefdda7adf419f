"""An app's runtime context on a host: what its worker units see, and what every command deploytool runs
for the app there (build steps, quiet, requeue, `fab run`, program checks) sees too.

A command is never run in the SSH user's login shell, whose PATH (rbenv, pyenv, asdf shims in
~/.profile) and environment differ from the units'. It runs as a transient systemd service with the
unit's own properties: `systemd-run --wait --pipe` as the worker's user, in the release, with the
same environment files, PATH and umask. Its output streams back and its exit code is the command's.

Secrets never reach argv: environment values come only from EnvironmentFile=; only PATH (not a
secret) is passed with --setenv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploytool.commands import unitfiles
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.kinds import KINDS
from deploytool.remote import join
from deploytool.units import search_path

# deploytool's own environment files (the inventory's `environment:` values), one per worker group and
# one for the app's commands (build, `fab run` without --group): root-only in system mode, under the
# deploy user's home in user mode.
ENV_DIR = "/etc/deploytool"
USER_ENV_DIR = ".config/deploytool"
APP_ENV = "app"  # the app-level file: `<app>/app.env`
# Marks the line naming the program a worker group's command resolves to (see resolve_programs).
PROGRAM = "@@deploytool-program"
NOT_FOUND = "-"


@dataclass(frozen=True)
class Runtime:
    """The properties a worker unit runs with, as systemd-run takes them."""

    user_mode: bool
    user: str | None  # system mode: User= (None in user mode: the user manager's own user)
    working_directory: str
    env_files: tuple[str, ...]  # absolute paths, loaded in order (a later file wins)
    home_env_file: str | None  # user mode: deploytool's file, relative to the user's $HOME
    path: str | None  # PATH, or None: systemd's default, as in the units
    umask: str | None = None  # None: systemd's default (0022), as in the units


def environment_file(app: App, group: str | None = None) -> str:
    """deploytool's environment file for `group` (None: the app-level one); relative to $HOME in user
    mode, where the home directory is known only on the host."""
    name = f"{app.name}/{group or APP_ENV}.env"
    return f"{ENV_DIR}/{name}" if app.systemd == "system" else f"{USER_ENV_DIR}/{name}"


def environment(app: App, group: WorkerGroup | None = None) -> dict[str, str]:
    """The values that file holds: PATH from `path:`, the app's, the group's, then REDIS_URL unless set
    (the same as the units' environment)."""
    path = search_path(app, group)
    env = {**({"PATH": path} if path else {}), **app.environment, **(group.environment if group else {})}
    if app.redis and "REDIS_URL" not in env:
        env["REDIS_URL"] = app.redis[0]
    return env


def env_file_text(env: Mapping[str, str]) -> str:
    """An EnvironmentFile= in systemd's syntax: every value double-quoted, `"`, `\\`, `` ` `` and `$`
    escaped, so systemd reads back each value exactly (inventory values hold no newline)."""
    lines = []
    for name, value in env.items():
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"{name}: a value with a newline or NUL cannot go into an environment file")
        escaped = "".join("\\" + ch if ch in '"\\`$' else ch for ch in value)
        lines.append(f'{name}="{escaped}"')
    return "".join(line + "\n" for line in lines)


def env_files_script(inv: Inventory, host: str, app: App) -> str:
    """Shell text writing deploytool's environment files of `app` on `host`: the app-level file and one
    per worker group there."""
    files = [(environment_file(app), env_file_text(environment(app)))]
    files += [(environment_file(app, g.name), env_file_text(environment(app, g))) for g in inv.groups_on(host, app)]
    return unitfiles.env_files(app, files)


def runtime(inv: Inventory, host: str, app: App, group: WorkerGroup | None = None) -> Runtime:
    """The context of `group`'s units on `host`, or with no group the app's (the SSH user's User=)."""
    user_mode = app.systemd == "user"
    own = environment_file(app, group.name if group else None)
    files = (app.env_file_path,) if app.env_file_path else ()
    return Runtime(
        user_mode=user_mode,
        user=None if user_mode else ((group.user if group else None) or inv.hosts[host].user),
        working_directory=app.current_path,
        env_files=files if user_mode else (own, *files),
        home_env_file=own if user_mode else None,
        path=search_path(app, group),
    )


def wrap(rt: Runtime, argv: Sequence[str], *, cwd: str | None = None, tty: bool = False,
         tolerant: bool = False) -> list[str]:
    """`argv` run in the context `rt`: as a transient service waited for, stdio passed through (`tty`:
    a pseudo-terminal, for interactive commands), removed afterwards even if it failed.

    `cwd` replaces the working directory (a build runs in its new release). `tolerant`: a missing
    working directory or environment file is no error (a check before the first deploy)."""
    if not argv:
        raise ValueError("no command to run")
    opt = "-" if tolerant else ""
    props = [f"--property=WorkingDirectory={opt}{cwd or rt.working_directory}"]
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
_RESOLVE = (
    'if p=$(command -v "$2"); then echo "$0 $1 $p"; '
    f'else echo "$0 $1 {NOT_FOUND}"; '
    "echo \"worker group $1: program $2 not found (PATH=$PATH, as the group's units see it)\" >&2; "
    "exit 127; fi"
)


def resolve_programs(inv: Inventory, host: str, app: App, groups: Sequence[WorkerGroup] | None = None,
                     *, skip_release: bool = False) -> str:
    """Shell text showing, per worker group, which program its command resolves to in the group's own
    context (`command -v` inside the same systemd-run as its units get); fails, after checking every
    group, if any resolves to nothing. `skip_release`: leave out programs inside the release (before a
    deploy, the new release is not there yet to check)."""
    checks = []
    for g in inv.groups_on(host, app) if groups is None else groups:
        name = program(app, g)[0]
        if skip_release and name.startswith(app.current_path + "/"):
            continue
        argv = ["/bin/sh", "-c", _RESOLVE, PROGRAM, g.name, name]
        checks.append(wrap(runtime(inv, host, app, g), argv, tolerant=True))
    if not checks:
        return "true"
    lines = ["unresolved=0", *(f"{join(c)} || unresolved=1" for c in checks), '[ "$unresolved" = 0 ]']
    return "\n".join(lines)


def parse_programs(stdout: str) -> dict[str, str | None]:
    """group → the program's path, or None where it resolves to nothing (from resolve_programs' output)."""
    found: dict[str, str | None] = {}
    for line in stdout.splitlines():
        marker, _, rest = line.partition(" ")
        if marker == PROGRAM:
            group, _, path = rest.partition(" ")
            found[group] = None if path == NOT_FOUND else path
    return found
