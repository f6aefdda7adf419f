"""What every task does with its common options: load the inventory, pick hosts and apps, map
errors to exit codes (0 ok, 1 a host failed, 2 bad input)."""

from __future__ import annotations

import functools
import inspect
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deploytool.errors import HostError, InputError
from deploytool.project import project_dir

# Task modules import only what `fab --list` needs; the inventory (pydantic) and everything that
# connects are imported inside the task bodies that use them.
if TYPE_CHECKING:
    from deploytool.inventory import App, Inventory

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_INVENTORY = "sandbox"

# Help texts shared by the tasks, so `fab --help TASK` reads the same everywhere.
HELP = {
    "inventory": "inventory name (the project's inventories/NAME.yml or inventories/NAME/) or path; "
                 "default from fabric.yaml",
    "host": "host name or comma list; default: every host the task applies to",
    "app": "app name; default: every app on the selected hosts",
    "role": "select the hosts having this role",
    "dry_run": "print the plan and change nothing",
    "verbose": "with --dry-run: each stage's commands and every unit diff line (default: stages and changes)",
    "json": "print one JSON report on stdout",
    "group": "only this worker group",
    "timeout": "seconds each stage may take on a host (default: the app's `timeout`, 600)",
}


def exit_codes(func: Callable[P, R]) -> Callable[P, R]:
    """Turn deploytool's errors into one-line messages and exit codes; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # A cancelled CI job sends SIGTERM: handle it like Ctrl-C, so hosts already started are
        # finished rather than abandoned (deploytool.engine.rolling), and output piped into `head` ends quietly.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            return func(*args, **kwargs)
        except (InputError, HostError) as e:
            from deploytool.redact import redact

            raise Exit(f"error: {redact(str(e))}", code=e.exit_code) from None

    return wrapper


def inventory_name(c: Context, inventory: str | None) -> str:
    if inventory:
        return inventory
    section: Any = c.config.get("deploytool", {}) or {}
    return str(section.get("inventory", DEFAULT_INVENTORY))


def load(c: Context, inventory: str | None, redacting: bool = True, procfile: bool = True) -> Inventory:
    """The inventory named by --inventory or fabric.yaml; a name is looked up in the project's inventories/.

    `procfile:` groups get their commands from the app's Procfile at its source.revision; a task that
    deploys another revision passes `procfile=False` and reads them itself (deploytool.procfile).

    Its secret values (deploytool.redact: `secrets:`, secret names, URL passwords) are remembered so
    that every message of this process redacts them; ordinary `environment:` values (`production`) are
    not secret and stay readable. `redacting=False`: a task that prints secrets on purpose
    (workers.render --show-secrets)."""
    from deploytool.inventory import load_inventory
    from deploytool.redact import inventory_secrets, remember

    inv = load_inventory(inventory_name(c, inventory), project_dir(c.config))
    if procfile:
        from deploytool.procfile_groups import at_revisions

        inv = at_revisions(inv)
    if redacting:
        remember(inventory_secrets(inv))
    return inv


@dataclass(frozen=True)
class Target:
    """One app on one host: the unit of work of most tasks."""

    host: str
    app: App


def split_names(value: str | None) -> list[str]:
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def select_hosts(inv: Inventory, host: str | None, role: str | None = None) -> list[str]:
    names = split_names(host)
    for name in names:
        if name not in inv.hosts:
            known = ", ".join(inv.hosts)
            raise InputError(f"{inv.path}: --host {name}: no such host (known: {known})")
    chosen = names or list(inv.hosts)
    if role:
        if not any(role in h.roles for h in inv.hosts.values()):
            raise InputError(f"{inv.path}: --role {role}: no host has this role")
        chosen = [n for n in chosen if role in inv.hosts[n].roles]
    return chosen


def select_targets(
    inv: Inventory, host: str | None, app: str | None, role: str | None = None
) -> list[Target]:
    """The (host, app) pairs a task works on. A host named explicitly that runs none of the selected
    apps is an input error; by default, hosts without apps are simply not selected."""
    if app and app not in inv.apps:
        raise InputError(f"{inv.path}: --app {app}: no such app (known: {', '.join(inv.apps)})")
    explicit = bool(split_names(host))
    targets: list[Target] = []
    for name in select_hosts(inv, host, role):
        apps = [a for n, a in inv.apps_on(name).items() if app in (None, n)]
        if not apps and explicit:
            what = f"app {app}" if app else "any app"
            raise InputError(f"{inv.path}: host {name}: does not run {what} (check its roles)")
        targets += [Target(name, a) for a in apps]
    if not targets:
        raise InputError(f"{inv.path}: no host runs {('app ' + app) if app else 'any app'}")
    return targets


def not_yet(task: str, issue: str) -> None:
    """A task whose work is not built yet says so and fails, rather than pretend."""
    raise Exit(f"error: {task} is not implemented yet ({issue})", code=1)


@dataclass(frozen=True)
class Number:
    """A numeric option: its type and the smallest value allowed (`above`: strictly greater)."""

    kind: type[int] | type[float]
    least: float
    above: bool = False
    most: float = 10**9

    def parse(self, name: str, value: Any) -> int | float:
        flag = "--" + name.replace("_", "-")
        what = "a whole number" if self.kind is int else "a number"
        bound = (f"> {self.least:g}" if self.above else f">= {self.least:g}") + f" and <= {self.most:g}"
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            raise InputError(f"{flag} {value}: expected {what} {bound}") from None
        if not self.least <= number <= self.most or (self.above and number == self.least):
            raise InputError(f"{flag} {value}: expected {what} {bound}")
        return number


# Every numeric option of every task, checked like the inventory: bad values are bad input (exit 2).
NUMBERS = {
    "lines": Number(int, 1),
    "max_fail": Number(int, 0),
    "parallel": Number(int, 0),
    "timeout": Number(float, 0, above=True, most=86400),
    "soak": Number(float, 0, most=86400),
    "max_failed_increase": Number(int, 0),
}
BATCHES = ("batch", "restart_batch", "canary")


def check_options(values: dict[str, Any]) -> dict[str, Any]:
    """Options as given on the command line (strings) → typed and range-checked, or InputError."""
    from deploytool.engine.rolling import batch_size

    checked = dict(values)
    for name, value in values.items():
        if name in NUMBERS and value is not None:
            checked[name] = NUMBERS[name].parse(name, value)
        elif name in BATCHES and value is not None:
            try:
                batch_size(str(value), 1, 1)
            except InputError as e:
                raise InputError(f"--{name.replace('_', '-')} {e}") from None
    return checked


def refuse_fabric_connection(c: Any) -> None:
    """A task handed a Fabric connection was started with `-H` by Fabric's own executor (a project whose
    fabric.yaml lacks deploytool's `tasks.executor_class`): it would act on the inventory's hosts, not on
    the one named. Refused before anything connects (Fabric connects lazily)."""
    from fabric import Connection

    if isinstance(c, Connection):
        raise InputError(f"-H/--hosts {c.host}: Fabric's host flag does not reach this task here (fabric.yaml "
                         "lacks `tasks: {executor_class: deploytool.tasks.run.Executor}`); use --host")


def command(**extra_help: str) -> Callable[[Callable[..., None]], Any]:
    """An Invoke task with exit codes, checked options and the shared help texts of the options it has.

    Invoke would convert a numeric option itself and fail with a traceback on `--lines abc`; here
    Invoke sees such options as text (their defaults as strings) and `check_options` converts them."""

    def wrap(func: Callable[..., None]) -> Any:
        sig = inspect.signature(func)
        params = sig.parameters

        @functools.wraps(func)
        def checked(*args: Any, **kwargs: Any) -> None:
            refuse_fabric_connection(args[0] if args else None)
            func(*args, **check_options(kwargs))

        checked.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
            p.replace(default=str(p.default)) if p.name in NUMBERS and p.default is not None else p
            for p in params.values()
        ])
        texts = {**HELP, **extra_help}
        return task(help={k: v for k, v in texts.items() if k in params})(exit_codes(checked))

    return wrap
