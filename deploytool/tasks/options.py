"""What every task does with its common options: load the inventory, pick hosts and apps, map
errors to exit codes (0 ok, 1 a host failed, 2 bad input)."""

from __future__ import annotations

import functools
import inspect
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deploytool.errors import HostError, InputError
from deploytool.inventory import App, Inventory, load_inventory
from deploytool.project import project_dir

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
    "json": "print one JSON report on stdout",
    "group": "only this worker group",
}


def exit_codes(func: Callable[P, R]) -> Callable[P, R]:
    """Turn deploytool's errors into one-line messages and exit codes; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # A cancelled CI job sends SIGTERM: handle it like Ctrl-C, so hosts already started are
        # finished rather than abandoned (deploytool.rolling), and output piped into `head` ends quietly.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            return func(*args, **kwargs)
        except (InputError, HostError) as e:
            raise Exit(f"error: {e}", code=e.exit_code) from None

    return wrapper


def inventory_name(c: Context, inventory: str | None) -> str:
    if inventory:
        return inventory
    section: Any = c.config.get("deploytool", {}) or {}
    return str(section.get("inventory", DEFAULT_INVENTORY))


def load(c: Context, inventory: str | None) -> Inventory:
    """The inventory named by --inventory or fabric.yaml; a name is looked up in the project's inventories/."""
    return load_inventory(inventory_name(c, inventory), project_dir(c.config))


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


def command(**extra_help: str) -> Callable[[Callable[..., None]], Any]:
    """An Invoke task with exit codes and the shared help texts of the options it actually has."""

    def wrap(func: Callable[..., None]) -> Any:
        params = inspect.signature(func).parameters
        texts = {**HELP, **extra_help}
        return task(help={k: v for k, v in texts.items() if k in params})(exit_codes(func))

    return wrap
