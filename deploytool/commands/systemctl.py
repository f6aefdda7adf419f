"""systemctl and journalctl commands for an app's worker units (system or user mode), as argv."""

from __future__ import annotations

from collections.abc import Sequence

from deploytool.inventory import App

# Properties `workers.status` reads; one `systemctl show` call covers every unit of a host.
STATUS_PROPERTIES = (
    "Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "ActiveEnterTimestamp",
    "NRestarts", "MainPID", "MemoryCurrent",
)


def systemctl(app: App, *args: str) -> list[str]:
    # -n: never prompt for a password; a missing sudo right fails at once instead of hanging.
    if app.systemd == "user":
        return ["systemctl", "--user", *args]
    return ["sudo", "-n", "systemctl", *args]


def journalctl(app: App, *args: str) -> list[str]:
    if app.systemd == "user":
        return ["journalctl", "--user", *args]
    return ["sudo", "-n", "journalctl", *args]


def start(app: App, units: Sequence[str]) -> list[str]:
    return systemctl(app, "start", *units)


def stop(app: App, units: Sequence[str]) -> list[str]:
    return systemctl(app, "stop", *units)



def enable(app: App, units: Sequence[str]) -> list[str]:
    return systemctl(app, "enable", "--quiet", *units)


def disable(app: App, units: Sequence[str]) -> list[str]:
    return systemctl(app, "disable", "--quiet", *units)


def kill_main(app: App, units: Sequence[str], signal: str) -> list[str]:
    # Main process only: SIGTSTP's default action would freeze a worker's children.
    return systemctl(app, "kill", "--kill-whom=main", f"--signal={signal}", *units)


def show(app: App, units: Sequence[str]) -> list[str]:
    return systemctl(app, "show", "--property=" + ",".join(STATUS_PROPERTIES), *units)


def is_active(app: App, units: Sequence[str]) -> list[str]:
    """Prints one state per unit, in order. Its exit code says only whether ANY unit is active."""
    return systemctl(app, "is-active", *units)


def logs(app: App, units: Sequence[str], lines: int, since: str | None, follow: bool) -> list[str]:
    argv = journalctl(app, "--no-pager", "--output=short-iso", f"--lines={lines}")
    if since:
        argv.append(f"--since={since}")
    if follow:
        argv.append("--follow")
    for unit in units:
        argv += ["--unit", unit]
    return argv


def enable_linger(user: str) -> list[str]:
    """User units start at boot only if the user lingers."""
    return ["sudo", "-n", "loginctl", "enable-linger", user]
