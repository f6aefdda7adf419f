"""Where every Python worker of the sample app records what it ran, in the Redis on redis-a.

`REDIS_URL` comes from the unit's environment (the inventory's `redis`). Per kind: `sample:started:<kind>`
(ids begun), `sample:done:<kind>` (ids finished), `sample:runs:<kind>` (runs per id: duplicates),
`sample:redelivered:<kind>` (ids the broker handed out again), `sample:where:<kind>` (host and pid of
the latest run, so a test can kill the process working a given job).
"""

import os
import socket
import time
from functools import cache

from redis import Redis


@cache
def redis() -> Redis:
    return Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10)


def run(kind: str, job_id: str, seconds: float | None = None, redelivered: bool = False) -> None:
    """Record the start, sleep like a job that works (SAMPLE_JOB_SECONDS, or `seconds`), record the end."""
    r = redis()
    pipe = r.pipeline()
    pipe.sadd(f"sample:started:{kind}", job_id)
    pipe.hset(f"sample:where:{kind}", job_id, f"{socket.gethostname()} {os.getpid()}")
    if redelivered:
        pipe.sadd(f"sample:redelivered:{kind}", job_id)
    pipe.execute()
    time.sleep(float(seconds if seconds is not None else os.environ.get("SAMPLE_JOB_SECONDS", "0.05")))
    pipe = r.pipeline()
    pipe.sadd(f"sample:done:{kind}", job_id)
    pipe.hincrby(f"sample:runs:{kind}", job_id, 1)
    pipe.execute()
