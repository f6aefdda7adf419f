"""The jobs probes count each queue's jobs that failed within the last RECENT seconds (what a canary's
failure-rate baseline takes from one reading): run here as a host runs them, Sidekiq's by Ruby with its
gem and RQ's by Debian's python3, against a real redis-server holding real failures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from in_ci import required_in_ci
from redis_server import PYTHON, py, socket, usable

from deploytool.jobs.model import RECENT
from deploytool.jobs.probe import parse
from deploytool.jobs.systems import PROBES, SYSTEMS

pytestmark = required_in_ci(usable(), "redis-server and python3 with rq and redis (Debian's)")
__all__ = ["socket"]  # the fixture

# Three RQ jobs that raise, worked by a real worker; then one's failure is made older than the window.
RQ_FAILURES = """
import sys, time
from datetime import datetime, timedelta, timezone
from redis import Redis
from rq import Queue, SimpleWorker
from rq.utils import utcformat
r = Redis(unix_socket_path=sys.argv[1])
q = Queue("default", connection=r)
jobs = [q.enqueue("os.rmdir", "/nonexistent/deploytool-test") for _ in range(3)]
SimpleWorker([q], connection=r).work(burst=True)
old = datetime.now(timezone.utc) - timedelta(seconds=int(sys.argv[2]) * 2)
r.hset("rq:job:" + jobs[0].id, "ended_at", utcformat(old.replace(tzinfo=None)))
"""

# Sidekiq's retry and dead sets as Sidekiq 6/7 (seconds) and 8 (milliseconds) write them.
SIDEKIQ_FAILURES = """
import json, sys, time
from redis import Redis
r = Redis(unix_socket_path=sys.argv[1])
now, window = time.time(), int(sys.argv[2])
jobs = {
    "retry": [{"jid": "a", "failed_at": now - 10},  # recent
              {"jid": "b", "failed_at": now - 5 * window, "retried_at": now - 5},  # failed again lately
              {"jid": "c", "failed_at": now - 5 * window}],  # old
    "dead": [{"jid": "d", "failed_at": now - 9 * window, "retried_at": now - 4 * window},  # old
             {"jid": "e", "failed_at": int((now - 20) * 1000)}],  # recent, in milliseconds
}
for key, entries in jobs.items():
    for job in entries:
        r.zadd(key, {json.dumps({"queue": "default", "class": "Job", **job}): now})
"""


def probe(system: str, argv: list[str], socket: str, cwd: Path) -> dict[str, int | None]:
    r = subprocess.run([*argv, "-", "default"], input=SYSTEMS[system].source(), capture_output=True, text=True,
                       check=False, timeout=60, cwd=cwd,
                       env={"PATH": os.environ["PATH"], "REDIS_URL": f"unix://{socket}"})
    assert r.returncode == 0, r.stderr
    [queue] = parse("h", r.stdout).queues
    return {"retrying": queue.retrying, "dead": queue.dead, "failed_recently": queue.failed_recently}


def test_rq_counts_the_failed_registrys_jobs_that_ended_within_the_window(socket: str, tmp_path: Path) -> None:
    py(RQ_FAILURES, socket, str(RECENT))
    assert probe("rq", [PYTHON], socket, tmp_path) == {"retrying": None, "dead": 3, "failed_recently": 2}


@required_in_ci(shutil.which("ruby") is not None, "ruby with the sidekiq gem")
def test_sidekiq_counts_retrying_and_dead_jobs_by_their_last_failure(socket: str, tmp_path: Path) -> None:
    py(SIDEKIQ_FAILURES, socket, str(RECENT))
    assert probe("sidekiq", ["ruby"], socket, tmp_path) == {"retrying": 3, "dead": 2, "failed_recently": 3}


def test_every_probe_counts_in_the_same_window() -> None:
    # The probes are programs of their own: each states the window it counts in, which must be RECENT.
    for name in ("sidekiq.rb", "rq.py", "dramatiq.py"):
        assert f"RECENT = {RECENT} " in (PROBES / name).read_text(), name
