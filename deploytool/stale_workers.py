"""Which workers still run with an older version of a file their units load: the app's env_file is read
by systemd only when a worker starts (EnvironmentFile=), so after `fab config.upload` changes it, every
worker that started before the change keeps the old values until it is restarted.

Read only: the file's modification time and each instance's start time, in one command per host."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from deploytool.commands import systemctl as sc
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.remote import join
from deploytool.units import instances, runtime

MTIME = "@@@deploytool-mtime@@@"
RUNNING = ("active", "reloading", "activating", "deactivating")


def loading_groups(inv: Inventory, host: str, app: App, path: str) -> list[WorkerGroup]:
    """The app's worker groups on `host` whose units load the file at `path` (its env_file)."""
    return [g for g in inv.groups_on(host, app) if path in runtime(inv, host, app, g).environment_files]


def read_command(app: App, path: str, units: Sequence[str]) -> str:
    """The file's modification time (microseconds) and each unit's id, state and start time."""
    mtime = f"echo {MTIME} $(stat -c %.6Y {shlex.quote(path)} 2>/dev/null || echo none)"
    if not units:
        return mtime
    show = sc.systemctl(app, "show", "--timestamp=us+utc", "--property=Id,ActiveState,ExecMainStartTimestamp",
                        *units)
    return f"{mtime}; {join(show)}"


def _started(text: str) -> float | None:
    # `Sun 2026-12-06 21:00:00.123456 UTC`, empty for a unit that never started.
    try:
        return datetime.strptime(text.strip() + "+0000", "%a %Y-%m-%d %H:%M:%S.%f UTC%z").timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Seen:
    running: list[str]  # the units read that run now
    stale: list[str]  # those of them whose units load the file and that started before it last changed


def parse(output: str, loading: Sequence[str]) -> Seen:
    """What read_command printed: the running units, and those of `loading` (the units that load the file)
    that started before the file was last changed, in the order systemd listed them."""
    mtime: float | None = None
    units: list[dict[str, str]] = [{}]
    for line in output.splitlines():
        if line.startswith(MTIME):
            value = line.removeprefix(MTIME).strip()
            mtime = float(value) if value.replace(".", "", 1).isdigit() else None
        elif not line.strip():
            units.append({})
        elif "=" in line:
            key, _, value = line.partition("=")
            units[-1][key] = value
    running = [u["Id"] for u in units if u.get("ActiveState") in RUNNING and "Id" in u]
    stale = []
    for u in units:
        started = _started(u.get("ExecMainStartTimestamp", ""))
        if u.get("Id") in running and u["Id"] in loading and started is not None and mtime is not None \
                and started < mtime:
            stale.append(u["Id"])
    return Seen(running, stale)


def wanted_units(inv: Inventory, host: str, app: App, path: str) -> list[str]:
    return [u for g in loading_groups(inv, host, app, path) for u in instances(app, g)]
