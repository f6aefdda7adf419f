"""The RQ requeue program (deploytool/requeue/rq.py) run here as a host runs it, by Debian's python3 with
its rq and redis, against a real redis-server on a socket: one run covers every queue it is given,
puts back each orphaned job once and leaves alone what a queue, a live worker or the settle time holds."""

from __future__ import annotations

import subprocess

from in_ci import required_in_ci
from redis_server import PYTHON, py, socket, usable

from deploytool.commands.requeue import PROGRAMS

# Two queues, three jobs each; in each queue one job popped by a worker that stopped before marking it
# started (status queued, in no list) and one left started by a worker that no longer exists.
SETUP = """
import sys, time
from redis import Redis
from rq import Queue
r = Redis(unix_socket_path=sys.argv[1])
for name in ("high", "default"):
    q = Queue(name, connection=r)
    for i in range(3):
        q.enqueue("os.getcwd", job_id=f"{name}-{i}")
    lost = r.lpop(q.key)
    died = r.lpop(q.key)
    r.hset(b"rq:job:" + died, mapping={"status": "started", "worker_name": "gone-worker"})
    r.zadd(f"rq:wip:{name}", {died: time.time() + 600})
"""

STATE = """
import sys
from redis import Redis
r = Redis(unix_socket_path=sys.argv[1])
for name in ("high", "default"):
    jobs = sorted(j.decode() for j in r.lrange(f"rq:queue:{name}", 0, -1))
    print(name, " ".join(jobs), " ".join(sorted(s.decode() for s in {r.hget(f"rq:job:{j}", "status") for j in jobs})))
"""


pytestmark = required_in_ci(usable(), "redis-server and python3 with rq and redis (Debian's)")
__all__ = ["socket"]  # the fixture


def requeue(socket: str, *queues: str) -> str:
    # As deploytool.commands.requeue runs it: the source on stdin, the URL in the environment.
    r = subprocess.run([PYTHON, "-", "-", *queues], input=(PROGRAMS / "rq.py").read_text(), capture_output=True,
                       text=True, check=False, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "DEPLOYTOOL_REDIS_URL": f"unix://{socket}"})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_one_run_puts_back_the_orphans_of_every_queue_once(socket: str) -> None:
    py(SETUP, socket)
    assert requeue(socket, "high", "default", "high") == "requeued 4"
    assert py(STATE, socket).splitlines() == ["high high-0 high-1 high-2 queued",
                                              "default default-0 default-1 default-2 queued"]
    assert requeue(socket, "high", "default") == "requeued 0"  # nothing orphaned any more


def test_a_queue_not_named_is_left_alone(socket: str) -> None:
    py(SETUP, socket)
    assert requeue(socket, "high") == "requeued 2"
    assert py(STATE, socket).splitlines()[1] == "default default-2 queued"
