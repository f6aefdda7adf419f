"""Requeue RQ jobs that stopped workers took but never finished. Runs ON A HOST, with the interpreter of
the host's own `rq`, right after deploytool stopped that host's RQ workers; sent by deploytool.

RQ 1.x loses a job when SIGTERM reaches an idle worker just as its blocking pop returns: the job left
the queue but the worker stops before marking it started. A worker that dies mid-job leaves the job
"started" by a worker that no longer exists. Both are put back at the front of their queue here.
A job popped by a live worker elsewhere at this very moment may be requeued too: a rare duplicate,
never a loss (workers are at-least-once anyway).

Usage: python rq.py REDIS_URL QUEUE [QUEUE...]   prints one line: requeued N
"""

import sys
import time

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

# A job popped by a live worker is marked started within milliseconds; give it ample time.
SETTLE_SECONDS = 2.0
QUEUED = JobStatus.QUEUED.value.encode()


def orphans(redis, queue):
    """Ids of jobs of `queue` that no queue list, registry or live worker holds."""
    alive = {w.name for w in Worker.all(connection=redis)}
    found = []
    registry = StartedJobRegistry(queue.name, connection=redis)
    for job_id in registry.get_job_ids():
        job = Job.fetch(job_id, connection=redis) if redis.exists(Job.key_for(job_id)) else None
        if job is not None and job.worker_name not in alive:
            found.append((job_id, registry))
    waiting = set(queue.get_job_ids())
    keys = [k for k in redis.scan_iter(match="rq:job:*", count=1000) if k.count(b":") == 2]
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, "status", "origin")
        for key, (status, origin) in zip(batch, pipe.execute()):  # noqa: B905 (the app may run Python < 3.10)
            job_id = key.decode().split(":", 2)[2]
            if status == QUEUED and origin == queue.name.encode() and job_id not in waiting:
                found.append((job_id, None))
    return found


def main(url, names):
    redis = Redis.from_url(url)
    queues = [Queue(name, connection=redis) for name in names]
    first = {q.name: {job_id for job_id, _ in orphans(redis, q)} for q in queues}
    if any(first.values()):
        time.sleep(SETTLE_SECONDS)
    requeued = 0
    for q in queues:
        for job_id, registry in orphans(redis, q):
            if job_id not in first[q.name]:
                continue  # appeared just now: a live worker may be taking it
            # Every host that restarts at the same moment sees the same orphan: the first one wins.
            if not redis.set(f"deploytool:requeued:{job_id}", 1, nx=True, ex=600):
                continue
            if registry is not None:
                registry.remove(job_id)
            redis.hset(Job.key_for(job_id), "status", JobStatus.QUEUED.value)
            q.push_job_id(job_id, at_front=True)
            requeued += 1
    print(f"requeued {requeued}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
