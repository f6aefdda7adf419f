"""Readiness: shell text that waits on the host, after a start, until each worker group is ready as its
own system tells it (deploytool.kinds.Ready), and fails naming the group otherwise.

- Every group: each unit stays active with the main process and restart count it had right after the
  start; a worker that exits, or that systemd restarts, fails the group at once.
- Ready.NOTIFY (Sidekiq): `systemctl start` already waited for the worker's READY=1.
- Ready.PROBE: the system's readiness probe (deploytool.jobs.systems: RQ's worker registered with its
  queues, Celery's node answering a ping and consuming its queues, Dramatiq's consumers on its queues),
  run in the release the new workers work in, once a second.
- Ready.STABLE (command, sneakers): nothing to ask beyond the units.
- `ready_after` seconds (the group's, else the kind's) must pass with the units unchanged first.

Each group has `ready_after` plus its timeout (its grace, `timeout:`) from the start; groups wait side
by side. Probes that compare against the state before the start (System.ready_marks) note it with the
group stopped (`prepare`, between stop and start)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from deploytool.commands import systemctl as sc
from deploytool.inventory import App, WorkerGroup
from deploytool.jobs import probe
from deploytool.jobs.systems import SYSTEMS
from deploytool.kinds import KINDS, Ready
from deploytool.remote import join
from deploytool.units import instances

# Unit, active state, main PID, restarts: one line per unit (the blocks of `systemctl show`).
_STATES_AWK = ("$1==\"Id\"{i=$2} $1==\"ActiveState\"{a=$2} $1==\"MainPID\"{p=$2} $1==\"NRestarts\"{n=$2} "
               "/^$/{if(i!=\"\")print i,a,p,n; i=\"\"} END{if(i!=\"\")print i,a,p,n}")
# The units that changed since FIRST (the lines right after the start), worded for the report.
_CHANGED_AWK = (
    'BEGIN{c=split(ENVIRON["FIRST"],l,"\\n"); for(k=1;k<=c;k++){split(l[k],f," "); p[f[1]]=f[3]; r[f[1]]=f[4]}} '
    '$2!="active"{print $1" is "$2" (exited)"; next} '
    '$3!=p[$1]{print $1" has a new main process ("p[$1]" -> "$3")"; next} '
    '$4!=r[$1]{print $1" was restarted ("$4" restarts)"}'
)


# The lines of ready_states whose unit is one of those in `want` (space-separated, spaces around).
_PICK_AWK = 'index(want, " " $1 " ")'


def _probed(group: WorkerGroup) -> bool:
    return KINDS[group.kind].ready is Ready.PROBE and SYSTEMS.get(group.kind) is not None \
        and SYSTEMS[group.kind].ready_probe is not None


def _marks(group: WorkerGroup) -> bool:
    return _probed(group) and SYSTEMS[group.kind].ready_marks


def spec(app: App, group: WorkerGroup, host: str) -> dict[str, Any]:
    """What the group's units should show its system: their names, Celery node names (the kinds
    table's -n app-group-N@host), the queues, how many processes."""
    return {
        "units": instances(app, group),
        "nodes": [f"{app.name}-{group.name}-{i}@{host}" for i in range(1, group.processes + 1)],
        "queues": probe.queue_names(group),
        "processes": group.processes,
    }


def _mark_var(i: int) -> str:
    return f"ready_mark_{i}"


def prepare(app: App, groups: Sequence[WorkerGroup], host: str) -> str:
    """Shell text run with the groups stopped, before their start: each marking probe's state kept in
    a shell variable (or, when it cannot be read, why, which fails the group in `wait`)."""
    lines = []
    for i, g in enumerate(groups):
        var = _mark_var(i)
        if _marks(g):
            lines.append(f"{var}=''; {var}_error=''")
            text = probe.ready_command(app, g, "mark", "", spec(app, g, host), host)
            lines.append(f"if out=$( ( {text}\n) 2>&1 ); then {var}=$(printf '%s\\n' \"$out\" | tail -n 1); "
                         f"else {var}_error=$(printf '%s' \"$out\" | tail -n 3 | tr '\\n' ' '); fi")
    return "\n".join(lines) or "true"


def _loop(app: App, group: WorkerGroup, index: int, host: str) -> str:
    """One group's wait, run in a background subshell: exit 0 once ready, else 1 with why on stderr."""
    name = shlex.quote(f"{app.name}/{group.name}")
    units = " ".join(shlex.quote(u) for u in instances(app, group))
    var = _mark_var(index)
    if _probed(group):
        check = probe.ready_command(app, group, "check", f"${var}", spec(app, group, host), host)
        asked = f'why=$( ( {check}\n) 2>&1 ) || {{ sleep 1; continue; }}'
        # The answer counts only if every unit is still the one that started.
        recheck = [f'  [ -z "$(ready_states {units} | awk {shlex.quote(_CHANGED_AWK)})" ] || continue']
    else:
        asked = "why=''"
        recheck = []  # nothing was asked: the units were read just above
    wait_after = group.ready_wait
    unreadable = [f'if [ -n "${var}_error" ]; then echo {name}": not ready: its system could not be read before '
                  f'the start: ${var}_error" >&2; exit 1; fi'] if _marks(group) else []
    return "\n".join([
        # `ready_after` first, then the group's timeout for its system to say so: a timeout no longer
        # than ready_after would leave no time to be ready at all.
        f"{{ start=$(date +%s); deadline=$((start + {wait_after + group.grace})); slept=0",
        *unreadable,
        f"FIRST=$(ready_pick {units}); export FIRST; why=''",
        "while :; do",
        f'  changed=$(ready_states {units} | awk {shlex.quote(_CHANGED_AWK)})',
        f'  if [ -n "$changed" ]; then echo {name}": not ready: $(printf "%s" "$changed" | tr "\\n" " ")" >&2; '
        "exit 1; fi",
        '  now=$(date +%s)',
        f'  if [ "$now" -ge "$deadline" ]; then echo {name}": not ready after {wait_after + group.grace} s '
        f'(ready_after {wait_after} s, then its timeout {group.grace} s): '
        '$(printf "%s" "$why" | tail -n 3 | tr "\\n" " ")" >&2; exit 1; fi',
        # Counted in the seconds slept, not in `date +%s`'s whole seconds, which can say 1 when only a
        # moment passed: ready_after seconds surely passed, and not a second more.
        f'  if [ "$slept" -lt {wait_after} ]; then sleep 1; slept=$((slept + 1)); continue; fi',
        f"  {asked}",
        *recheck,
        f'  echo "ready: "{name}" after $(( $(date +%s) - start )) s${{why:+: $(printf "%s" "$why" | tail -n 1)}}"; '
        "exit 0",
        "done; }",
    ])


def wait(app: App, groups: Sequence[WorkerGroup], host: str) -> str:
    """Shell text run right after the start: every group's wait side by side; fails if any group is
    not ready (each failing group says why on stderr)."""
    waiting = [(i, g) for i, g in enumerate(groups) if g.processes]
    if not waiting:
        return "true"
    show = join(sc.systemctl(app, "show", "--property=Id,ActiveState,MainPID,NRestarts"))
    every = " ".join(shlex.quote(u) for _, g in waiting for u in instances(app, g))
    lines = [f"ready_states() {{ {show} \"$@\" | awk -F= {shlex.quote(_STATES_AWK)}; }}",
             # Every group's units as they came up, read once: one systemctl call, not one per group.
             f"ready_first=$(ready_states {every})",
             f"ready_pick() {{ printf '%s\\n' \"$ready_first\" | awk -v want=\" $* \" {shlex.quote(_PICK_AWK)}; }}",
             "ready_pids=''"]
    for i, g in waiting:
        lines += [f"( {_loop(app, g, i, host)}\n) &", 'ready_pids="$ready_pids $!"']
    lines.append('ready_failed=0; for p in $ready_pids; do wait "$p" || ready_failed=1; done; '
                 '[ "$ready_failed" = 0 ]')
    return "\n".join(lines)
