"""The code a group's workers run: the release their main process works in (/proc/PID/cwd), as shell
text evaluated on the host.

The units start in `current`, and the kernel keeps the directory a process started in, not the link:
a worker started before a deploy switched `current` still runs the old release. Whatever speaks for
running workers (the Celery quiet, the readiness and jobs probes) must load that code, not whatever
`current` says at that moment; before any worker of the group runs, it is `current` (what a start
would run)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from deploytool.commands import systemctl as sc
from deploytool.inventory import App, WorkerGroup
from deploytool.remote import join
from deploytool.units import instances

# The shell variable the release is put in (see release_of).
VAR = "release"


def _readlink(app: App, group: WorkerGroup) -> str:
    """Shell text: `cwd_of PID` prints the process's working directory. A worker running as another
    user (`user:`) is read as that user (the SSH user may not look into its processes)."""
    plain = 'readlink "/proc/$1/cwd" 2>/dev/null'
    if app.systemd == "system" and group.user:
        other = join(["sudo", "-n", "systemd-run", "--quiet", "--wait", "--collect", "--pipe",
                      f"--uid={group.user}", "--", "/usr/bin/readlink"])
        plain += f' || {other} "/proc/$1/cwd" 2>/dev/null'
    return f"cwd_of() {{ {plain}; }}"


def release_of(app: App, group: WorkerGroup, units: Sequence[str] | None = None, var: str = VAR) -> str:
    """Shell text setting `$var` to the release the first running worker of `units` (default: the
    group's) works in, else to `current` itself (resolved: the release a start would run)."""
    show = join(sc.systemctl(app, "show", "--property=MainPID", "--value"))
    names = " ".join(shlex.quote(u) for u in (instances(app, group) if units is None else units))
    current = shlex.quote(app.current_path)
    return "\n".join([
        _readlink(app, group),
        f"{var}=''",
        f"for unit in {names}; do pid=$({show} \"$unit\" 2>/dev/null); "
        f'case "$pid" in ""|0|*[!0-9]*) continue ;; esac; '
        f'if {var}=$(cwd_of "$pid") && [ -n "${var}" ]; then break; fi; done',
        f'[ -n "${var}" ] || {var}=$(readlink -f {current}) || {var}={current}',
    ])


def while_active(app: App, group: WorkerGroup, unit: str, commands: Sequence[str], var: str = VAR) -> str:
    """Shell text running `commands` only while `unit` is active, with `$var` the release its main
    process works in (else `current` resolved): its state and main PID read in one systemctl call."""
    show = join(sc.systemctl(app, "show", "--property=ActiveState,MainPID", unit))
    current = shlex.quote(app.current_path)
    return "\n".join([
        _readlink(app, group),
        f"active=''; pid=0; for kv in $({show} 2>/dev/null); do case $kv in "
        "ActiveState=*) active=${kv#*=} ;; MainPID=*) pid=${kv#*=} ;; esac; done",
        'if [ "$active" = active ]; then',
        f'if ! {var}=$(cwd_of "$pid") || [ -z "${var}" ]; then {var}=$(readlink -f {current}) || {var}={current}; fi',
        *commands,
        "fi",
    ])
