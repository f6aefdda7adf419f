"""Requeue RQ jobs that stopped workers took but never finished. Runs ON A HOST, with the interpreter of
the host's own `rq`, right after deploytool stopped that host's RQ workers; sent by deploytool.

RQ 1.x loses a job when SIGTERM reaches an idle worker just as its blocking pop returns: the job left
the queue but the worker stops before marking it started. A worker that dies mid-job leaves the job
"started" by a worker that no longer exists. Both are put back at the front of their queue here.
A job popped by a live worker elsewhere at this very moment may be requeued too: a rare duplicate,
never a loss (workers are at-least-once anyway). Needs Redis >= 6.0.6 (LPOS).

Usage: python rq.py REDIS_URL QUEUE [QUEUE...]   prints one line: requeued N
One run covers every queue given (the queues of all of an app's RQ groups on the host that share its
Redis and interpreter: deploytool.commands.requeue), with one scan of the job hashes per pass.
REDIS_URL `-` reads the URL from the environment variable DEPLOYTOOL_REDIS_URL (so a password in it
never shows in the process list).

It reads job hashes field by field and never unpickles job data.
"""

import os
import sys
import time

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

# Put a job back only if it is still orphaned, atomically: hosts restarting at the same moment all
# see the same orphan, and only one of them may push it. KEYS: job hash, queue list, started registry.
REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'started' then
    if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
elseif status ~= 'queued' or redis.call('LPOS', KEYS[2], ARGV[1]) then
    return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""

# A job popped by a live worker is marked started within milliseconds; give it ample time.
SETTLE_SECONDS = 2.0
QUEUED = JobStatus.QUEUED.value.encode()


def orphans(redis, queues):
    """Per queue name, the ids of its jobs that no queue list, registry or live worker holds; every
    queue's jobs found in one scan of the job hashes."""
    alive = {w.name for w in Worker.all(connection=redis)}
    found = {q.name: [] for q in queues}
    for q in queues:
        for job_id in StartedJobRegistry(q.name, connection=redis).get_job_ids():
            # Only the hash fields needed, never Job.fetch: that unpickles job data, and whoever can write
            # to Redis could make an unpickling process run code of their choice.
            key = Job.key_for(job_id)
            if redis.exists(key):
                worker = redis.hget(key, "worker_name")
                if (worker.decode() if worker else None) not in alive:
                    found[q.name].append(job_id)
    waiting = {q.name.encode(): set(q.get_job_ids()) for q in queues}
    keys = [k for k in redis.scan_iter(match="rq:job:*", count=1000) if k.count(b":") == 2]
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, "status", "origin")
        for key, (status, origin) in zip(batch, pipe.execute()):  # noqa: B905 (the app may run Python < 3.10)
            job_id = key.decode().split(":", 2)[2]
            if status == QUEUED and origin in waiting and job_id not in waiting[origin]:
                found[origin.decode()].append(job_id)
    return found


def main(url, names):
    redis = Redis.from_url(url)
    queues = [Queue(name, connection=redis) for name in dict.fromkeys(names)]
    first = {name: set(ids) for name, ids in orphans(redis, queues).items()}
    requeued = 0
    if any(first.values()):
        time.sleep(SETTLE_SECONDS)
        push = redis.register_script(REQUEUE)
        again = orphans(redis, queues)
        for q in queues:
            started = StartedJobRegistry(q.name, connection=redis).key
            for job_id in again[q.name]:
                if job_id in first[q.name]:  # else it appeared just now: a live worker may be taking it
                    requeued += push(keys=[Job.key_for(job_id), q.key, started], args=[job_id])
    print(f"requeued {requeued}")


if __name__ == "__main__":
    main(os.environ["DEPLOYTOOL_REDIS_URL"] if sys.argv[1] == "-" else sys.argv[1], sys.argv[2:])
