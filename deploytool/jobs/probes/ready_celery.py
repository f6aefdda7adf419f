"""Is each Celery node of a group ready? Runs ON A HOST, in the release the nodes run, with the
interpreter of the group's `celery` and the nodes' own Celery app (`-A APP`), so the broker is theirs
(deploytool.commands.ready, once a second until ready or the group's timeout). Read only: remote
control `ping` and `active_queues`, addressed to the group's nodes.

Usage: python - APP MODE STATE SPEC

MODE `mark` (before the start) has nothing to note (prints {}) for Celery; `check` exits 0 once every node of SPEC
(JSON: {"nodes": [...], "queues": [...]}) answers a ping and consumes every queue of the group; else
1, saying which does not.
"""

import json
import os
import sys

from celery.app.utils import find_app

TIMEOUT = 1.0  # seconds to wait for the nodes' replies (each ask returns once every node replied)


def main(app_name, mode, state, spec):
    if mode != "check":
        print("{}")
        return 0
    spec = json.loads(spec)
    sys.path.insert(0, os.getcwd())
    app = find_app(app_name)
    nodes = spec["nodes"]
    inspect = app.control.inspect(destination=nodes, timeout=TIMEOUT, limit=len(nodes))
    pongs = inspect.ping() or {}
    consuming = inspect.active_queues() or {}
    problems = []
    for node in nodes:
        if node not in pongs:
            problems.append(f"{node}: no answer to ping")
            continue
        queues = {q.get("name") for q in consuming.get(node) or []}
        missing = [q for q in spec["queues"] if q not in queues]
        if missing:
            problems.append(f"{node}: not consuming {', '.join(missing)}")
    print("; ".join(problems) or "every node answers and consumes its queues")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
