"""The command that runs a kind's requeue program on a host, in the worker group's runtime context and
with the worker's own interpreter."""

from __future__ import annotations

import shlex
from pathlib import Path

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


def requeue(inv: Inventory, host: str, app: App, group: WorkerGroup) -> str | None:
    """Shell text, or None for kinds that need no requeue.

    It runs in the background, logging to the host's journal (tag deploytool-requeue): starting the
    workers again must not wait for a scan of Redis, nor fail because of one."""
    kind = KINDS[group.kind]
    if kind.requeue is None or not group.processes:
        return None
    source = (PROGRAMS / kind.requeue).read_text()
    queues = [x.name for x in group.queues] or ["default"]
    run = in_context(inv, host, app, ["/bin/sh", "-c", _RUN, "sh", program(app, group)[0], *queues], group)
    failed = f"could not requeue unfinished {group.kind} jobs of {app.name}-{group.name}"
    return (f"{{ {join(run)} <<'{END}' || echo {shlex.quote(failed)}\n{source}\n{END}\n}} "
            f"</dev/null 2>&1 | logger -t deploytool-requeue &")
