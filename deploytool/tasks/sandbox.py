"""`fab sandbox.up|down|reboot`: the local fleet of real hosts (see deploytool/sandbox/)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.tasks import task

from deploytool import sandbox as fleet
from deploytool.errors import HostError, InputError
from deploytool.project import project_dir

DEFAULT_INVENTORY = "sandbox"
INVENTORY_HELP = "inventory name (inventories/NAME.yml) or path; default: config deploytool.inventory"

_print_lock = threading.Lock()


def _report(name: str, message: str) -> None:
    with _print_lock:  # hosts report from parallel threads: keep each line whole
        print(f"{name}: {message}", flush=True)


def inventory_path(c: Any, inventory: str | None) -> Path:
    """A name resolves to the project's inventories/NAME.yml; anything else is a path."""
    value = inventory or c.config.get("deploytool", {}).get("inventory") or DEFAULT_INVENTORY
    if "/" in value or value.endswith((".yml", ".yaml")):
        return Path(value)
    return project_dir(c.config) / "inventories" / f"{value}.yml"


@contextmanager
def _exit_codes() -> Iterator[None]:
    """Map failures to exit codes: 2 bad input (nothing touched), 1 a host failed."""
    try:
        yield
    except InputError as exc:
        raise Exit(f"sandbox: {exc}", InputError.exit_code) from exc
    except HostError as exc:
        raise Exit(f"sandbox: {exc}", HostError.exit_code) from exc


def _hosts(c: Any, inventory: str | None) -> list[fleet.SandboxHost]:
    return fleet.load_hosts(inventory_path(c, inventory))


def _select(hosts: list[fleet.SandboxHost], names: str | None) -> list[fleet.SandboxHost]:
    if not names:
        return hosts
    by_name = {h.name: h for h in hosts}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise InputError(f"--host: not in the inventory: {', '.join(unknown)}")
    return [by_name[n] for n in wanted]


def _run(action: Callable[[], None]) -> None:
    with _exit_codes():
        action()


@task(help={"inventory": INVENTORY_HELP})
def up(c: Any, inventory: str | None = None) -> None:
    """Boot the inventory's sandbox hosts (idempotent; cleans leftovers of a crashed run first)."""
    _run(lambda: fleet.up(_hosts(c, inventory), _report))


@task
def down(c: Any) -> None:
    """Remove every sandbox host on this machine, its namespaces, mounts, cgroups, bridge and state."""
    _run(lambda: fleet.down(_report))


@task(help={"inventory": INVENTORY_HELP, "host": "NAME[,NAME]: hosts to reboot (default: all)"})
def reboot(c: Any, host: str | None = None, inventory: str | None = None) -> None:
    """Reboot sandbox hosts for real (systemctl reboot inside) and return when they are up again."""
    _run(lambda: fleet.reboot(_select(_hosts(c, inventory), host), _report))


sandbox = Collection("sandbox", up, down, reboot)
# `invoke -c deploytool.tasks.sandbox` looks for `ns`: the collection also works on its own.
ns = sandbox
