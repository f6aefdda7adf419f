"""The command that runs a kind's requeue program on a host, with the worker's own interpreter."""

from __future__ import annotations

import shlex
from pathlib import Path

from deploytool.commands.release import with_app_env
from deploytool.inventory import App, WorkerGroup
from deploytool.kinds import KINDS

q = shlex.quote

PROGRAMS = Path(__file__).resolve().parent.parent / "requeue"
END = "DEPLOYTOOL_REQUEUE_END"


def requeue(app: App, group: WorkerGroup) -> str | None:
    """Shell text, or None for kinds that need no requeue.

    It runs in the background, logging to the host's journal (tag deploytool-requeue): starting the
    workers again must not wait for a scan of Redis, nor fail because of one."""
    kind = KINDS[group.kind]
    if kind.requeue is None or not group.processes:
        return None
    source = (PROGRAMS / kind.requeue).read_text()
    program = (group.command or kind.program)[0]
    # The worker's program is a script of the app's own interpreter (a venv's or the system's).
    interpreter = f'py=$(sed -n "1s/^#! *//p" "$(command -v {q(program)})")'
    url = q(app.redis[0]) if app.redis else '"$REDIS_URL"'
    queues = " ".join(q(x.name) for x in group.queues) or "default"
    # The URL (it may hold a password) goes in the environment, not in the program's argv.
    run = f'DEPLOYTOOL_REDIS_URL={url} "${{py:-python3}}" - - {queues} <<\'{END}\'\n{source}\n{END}'
    env = {**app.environment, **group.environment}
    failed = f"could not requeue unfinished {group.kind} jobs of {app.name}-{group.name}"
    return (f"{{ ( cd {q(app.current_path)} && {with_app_env(app, interpreter, env)} && {run}\n) "
            f"|| echo {q(failed)}; }} </dev/null 2>&1 | logger -t deploytool-requeue &")
