"""Is each RQ worker of a group ready? Runs ON A HOST, in the release the workers run, with the
interpreter of the group's `rq` (deploytool.commands.ready, once a second until ready or the group's
timeout). Read only.

Usage: python - MODE STATE SPEC   (Redis from RQ_REDIS_URL, else REDIS_URL, as the worker takes it)

MODE `mark` (before the start) has nothing to note (prints {}) for RQ; `check` exits 0 once every unit of SPEC
(JSON: {"units": [...], "queues": [...]}) has a worker registered in Redis by this host whose process
runs in that unit, listening on every queue of the group; else 1, saying what is missing.
"""

import json
import os
import socket
import sys

from redis import Redis
from rq.worker import Worker

# unit_of(pid) comes from local.py, sent to the host ahead of this program (deploytool.jobs.systems).


def main(mode, state, spec):
    if mode != "check":
        print("{}")
        return 0
    spec = json.loads(spec)
    redis = Redis.from_url(os.environ.get("RQ_REDIS_URL") or os.environ["REDIS_URL"])
    hostname = socket.gethostname()
    seen = {}
    for w in Worker.all(connection=redis):
        unit = unit_of(w.pid) if w.hostname == hostname and w.pid else None  # noqa: F821
        if unit in spec["units"]:
            seen[unit] = set(w.queue_names())
    problems = [f"{u}: no worker registered in Redis" for u in spec["units"] if u not in seen]
    problems += [f"{u}: registered without queue(s) {', '.join(sorted(set(spec['queues']) - queues))}"
                 for u, queues in seen.items() if not set(spec["queues"]) <= queues]
    print("; ".join(problems) or "every worker registered with its queues")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
