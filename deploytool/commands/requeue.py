"""The command that runs a kind's requeue program on a host, in the worker group's runtime context and
with the worker's own interpreter: once per app and host for all its groups that share that context."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from deploytool import units
from deploytool.context import in_context, program
from deploytool.inventory import App, Inventory, WorkerGroup
from deploytool.kinds import KINDS
from deploytool.remote import join

PROGRAMS = Path(__file__).resolve().parent.parent / "requeue"
END = "DEPLOYTOOL_REQUEUE_END"

# Run inside the context: the worker's program ($1) is a script of the app's own interpreter (a venv's
# or the system's), named by its shebang, looked up in the units' PATH. `$py` stays unquoted so a
# `#!/usr/bin/env python3` shebang works too. The program's source arrives on stdin.
# The Redis URL (it may hold a password) never travels in an argv: the program reads it from
# DEPLOYTOOL_REDIS_URL, set here from REDIS_URL of the group's environment files (the app's first Redis,
# the one the worker's own --url names, unless the inventory sets REDIS_URL itself).
_RUN = ('py=$(sed -n "1s/^#! *//p" "$(command -v "$1")"); shift; '
        'DEPLOYTOOL_REDIS_URL=$REDIS_URL exec ${py:-python3} - - "$@"')


def _context_key(app: App, group: WorkerGroup) -> tuple[object, ...]:
    """What the requeue program's run depends on besides its queues: the program (its interpreter, found
    in the units' PATH), the user, and the environment that picks the Redis and the Python it imports."""
    env = units.environment(app, group)
    picked = tuple(sorted((k, v) for k, v in env.items() if k in ("REDIS_URL", "PATH") or k.startswith("PYTHON")))
    return (KINDS[group.kind].requeue, program(app, group)[0], units.search_path(app, group), group.user, picked)


def requeues(inv: Inventory, host: str, app: App, groups: Sequence[WorkerGroup]) -> list[str]:
    """Shell text per requeue run the stopped `groups` need: one for all the groups that share a context
    (the same Redis, interpreter and user: _context_key), with all their queues; kinds that need none, none.

    Each runs in the background, logging to the host's journal (tag deploytool-requeue): starting the
    workers again must not wait for a scan of Redis, nor fail because of one."""
    shared: dict[tuple[object, ...], list[WorkerGroup]] = {}
    for g in groups:
        if KINDS[g.kind].requeue is not None and g.processes:
            shared.setdefault(_context_key(app, g), []).append(g)
    texts = []
    for together in shared.values():
        first = together[0]
        queues = list(dict.fromkeys(q.name for g in together for q in (g.queues or ()))) or ["default"]
        source = (PROGRAMS / str(KINDS[first.kind].requeue)).read_text()
        run = in_context(inv, host, app, ["/bin/sh", "-c", _RUN, "sh", program(app, first)[0], *queues], first)
        names = ", ".join(f"{app.name}-{g.name}" for g in together)
        failed = f"could not requeue unfinished {first.kind} jobs of {names}"
        texts.append(f"{{ {join(run)} <<'{END}' || echo {shlex.quote(failed)}\n{source}\n{END}\n}} "
                     f"</dev/null 2>&1 | logger -t deploytool-requeue &")
    return texts
