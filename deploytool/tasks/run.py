"""`fab run --host H [--app A] [--group G] -- CMD...`: a one-off command (a console, a rake task, a
migration) on a host, in the app's runtime context: the units' user, release, PATH and environment
files (deploytool.context), never the SSH login's. Its output streams back; `fab` exits with its code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fabric.executor import Executor as FabricExecutor
from invoke.context import Context
from invoke.exceptions import Exit

from deploytool.errors import HostError, InputError
from deploytool.tasks.core_options import apply_hosts as apply_hosts_option
from deploytool.tasks.core_options import check_refused
from deploytool.tasks.options import command, load, select_targets, split_names

if TYPE_CHECKING:  # imported by the task body, not by `fab --list`
    from deploytool.inventory import App, Inventory, WorkerGroup
    from deploytool.remote import Session

RUN_HELP = {
    "all": "run on every host of the app, one after the other (default: one host, which --host names)",
    "group": "run in this worker group's context (its user and environment); default: the app's",
    "tty": "allocate a terminal even when stdin and stdout are not terminals (they are for a console)",
    "app": "app name; needed when several apps run on the host",
    "host": "host name, or comma list",
    "dry_run": "print the host(s) and the exact command that would run there; run nothing",
}
# systemd's exit code when it cannot enter the working directory (EXIT_CHDIR).
EXIT_CHDIR = 200


class Executor(FabricExecutor):  # type: ignore[misc]  # Fabric ships no type hints
    """Leaves the text after `--` to the task that asked for it (`fab run`): Fabric would otherwise run it
    itself on `-H` hosts, and refuse without them. `fab -H x -- cmd` without a task works as before.

    Fabric's core options reach the tasks as deploytool.tasks.core_options says: `-H` as each task's
    `--host` (never a Fabric connection per host, which the tasks would not use), others refused."""

    def expand_calls(self, calls: Any, apply_hosts: bool = True) -> Any:
        if not calls:
            return super().expand_calls(calls, apply_hosts)
        if apply_hosts:
            core_args = self.core[0].args
            check_refused(core_args)
            if core_args.hosts.value:
                apply_hosts_option(core_args.hosts.value, calls)
        remainder, self.core.remainder = self.core.remainder, ""
        try:
            return super().expand_calls(calls, apply_hosts=False)
        finally:
            self.core.remainder = remainder


def command_after_dashes(argv: Sequence[str]) -> list[str]:
    """The command as typed after `--`, word for word (Invoke keeps only a space-joined string, which
    would lose the quoting of `python3 -c 'import sys; print(sys.executable)'`)."""
    args = list(argv)
    return args[args.index("--") + 1:] if "--" in args else []


def choose(inv: Inventory, host: str | None, app: str | None, group: str | None,
           all_hosts: bool) -> list[tuple[str, App, WorkerGroup | None]]:
    if not split_names(host) and not all_hosts:
        raise InputError(f"{inv.path}: fab run: name a host with --host (or --all for every host of the app)")
    targets = select_targets(inv, host, app)
    apps = sorted({t.app.name for t in targets})
    if len(apps) > 1:
        raise InputError(f"{inv.path}: fab run: several apps run there ({', '.join(apps)}); choose one with --app")
    chosen: list[tuple[str, App, WorkerGroup | None]] = []
    for t in targets:
        groups = {g.name: g for g in inv.groups_on(t.host, t.app)}
        if group is not None and group not in groups:
            raise InputError(f"{inv.path}: host {t.host}: app {t.app.name}: --group {group}: no such worker group "
                             f"there (known: {', '.join(groups) or 'none'})")
        chosen.append((t.host, t.app, groups[group] if group else None))
    return chosen


def attached(session: Session, text: str, pty: bool) -> int:
    """Run with stdin forwarded (its end closes the command's stdin, so `cmd < file` works and nothing
    waits for input that never comes) and output passed through; with `pty`, a terminal both ways.
    Session.stream passes output only: `fab run` is the one caller that needs stdin."""
    session.commands += 1
    try:
        return int(session.connection.run(text, pty=pty, warn=True).exited)
    except Exception as e:  # paramiko/socket errors: the host is gone or unreachable
        raise HostError(f"{session.host.name}: run: {e}") from None


def command_text(inv: Inventory, host: str, app: App, group: WorkerGroup | None, argv: Sequence[str],
                 interactive: bool) -> str:
    """The shell text sent to the host: `argv` in the app's (or the group's) runtime context."""
    from deploytool.context import in_context
    from deploytool.remote import join

    return join(in_context(inv, host, app, argv, group, tty=interactive))


def not_runnable(session: Session, inv: Inventory, host: str, app: App, group: WorkerGroup | None) -> list[str]:
    """Why the command cannot run on the host, read before it runs (one read-only round trip): the app
    not deployed there (no release), or an environment file its context loads missing (after
    workers.uninstall, before a first deploy or config.upload). Empty when it can run."""
    from deploytool import context
    from deploytool.commands import check as probes

    rt = context.runtime(inv, host, app, group)
    paths = [f"{rt.working_directory}/", *rt.env_files]
    gone = probes.parse_missing(session.run(probes.missing(paths, [rt.home_env_file] if rt.home_env_file else []),
                                            "run").stdout)
    reasons = []
    for path in gone:
        if path == f"{rt.working_directory}/":
            reasons.append(f"{app.name} is not deployed there: {app.current_path} is missing "
                           f"(fab deploy --host {host})")
        elif path == app.env_file_path:
            reasons.append(f"its env_file {path} is missing "
                           f"(fab config.upload --host {host} --file {app.env_file} --from PATH)")
        else:
            reasons.append(f"environment file {path} is missing (a deploy or fab workers.install --host {host} "
                           "writes it)")
    return reasons


def dry_run_text(inv: Inventory, chosen: list[tuple[str, App, WorkerGroup | None]], argv: Sequence[str],
                 interactive: bool) -> str:
    """What `--dry-run` prints: each host and the exact command it would run (redacted by the caller)."""
    lines = ["dry run: nothing is run; in the runtime context of the app's workers (docs/runtime.md), "
             + ("on each host, one after the other:" if len(chosen) > 1 else "on the host:")]
    for name, the_app, the_group in chosen:
        lines.append(f"{name}: {the_app.name}" + (f": group {the_group.name}" if the_group else ""))
        lines.append(f"  {command_text(inv, name, the_app, the_group, argv, interactive)}")
    return "\n".join(lines)


@command(**RUN_HELP)
def run(c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
        group: str | None = None, all: bool = False, tty: bool = False, dry_run: bool = False) -> None:
    """Run a command after `--` on a host, as the app's workers would (their user, release, PATH, env)."""
    from deploytool.redact import redact
    from deploytool.remote import connect

    argv = command_after_dashes(sys.argv)
    if not argv:
        raise InputError("fab run: give the command after `--`, e.g. fab run --host prod-a -- rake db:migrate")
    inv = load(c, inventory)
    chosen = choose(inv, host, app, group, all)
    interactive = tty or (len(chosen) == 1 and sys.stdin.isatty() and sys.stdout.isatty())
    if dry_run:
        print(redact(dry_run_text(inv, chosen, argv, interactive)))
        return
    worst = 0
    for name, the_app, the_group in chosen:
        if len(chosen) > 1:
            print(f"== {name}", file=sys.stderr, flush=True)
        text = command_text(inv, name, the_app, the_group, argv, interactive)
        session = connect(inv.hosts[name])
        try:
            reasons = not_runnable(session, inv, name, the_app, the_group)
            code = 1 if reasons else attached(session, text, interactive)
        finally:
            session.close()
        for reason in reasons:
            print(redact(f"error: {name}: {the_app.name}: cannot run: {reason}"), file=sys.stderr)
        if code == EXIT_CHDIR:
            print(f"{name}: {the_app.current_path} is missing: deploy the app first", file=sys.stderr)
        if code and not worst:
            worst = code
    if worst:
        raise Exit(code=worst)
