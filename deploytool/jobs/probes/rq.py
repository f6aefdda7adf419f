"""Reads RQ's own keys and prints one JSON object. Runs ON A HOST of the app, in the release, with the
interpreter of the app's `rq` and its rq and redis libraries; sent by deploytool (deploytool/jobs/probe.py).
Read only: nothing is written, cleaned up or moved, and no job data is unpickled (only the plain
`enqueued_at` field of the oldest job is read).

Usage: python - QUEUE...   (Redis from REDIS_URL)

Keys (their names from rq itself): the queue list, the started (wip), failed, scheduled and deferred
registries per queue (sorted sets; started and failed entries scored by expiry), and the workers'
hashes (name, hostname, pid, queues, state).
"""

import json
import os
import socket
import sys
import time

from redis import Redis
from rq import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.utils import utcparse
from rq.worker import Worker

# unit_of(pid) comes from local.py, sent to the host ahead of this program (deploytool.jobs.systems).


def latency(redis, queue, now):
    oldest = redis.lindex(queue.key, 0)  # RQ pushes on the right and pops on the left
    if oldest is None:
        return 0.0
    enqueued = redis.hget(b"rq:job:" + oldest, "enqueued_at")
    if not enqueued:
        return 0.0
    seconds = (utcparse(enqueued.decode()) - utcparse("1970-01-01T00:00:00.000000Z")).total_seconds()
    return round(max(now - seconds, 0.0), 3)


def queue_stats(redis, name, now):
    queue = Queue(name, connection=redis)
    started = StartedJobRegistry(name, connection=redis).key
    failed = FailedJobRegistry(name, connection=redis).key
    return {
        "name": name,
        "queued": redis.llen(queue.key),
        "latency": latency(redis, queue, now),
        # Started and failed entries are scored by their expiry: expired ones are not counted.
        "running": redis.zcount(started, now, "+inf"),
        "scheduled": redis.zcard(ScheduledJobRegistry(name, connection=redis).key),
        "deferred": redis.zcard(DeferredJobRegistry(name, connection=redis).key),
        "dead": redis.zcount(failed, now, "+inf"),
        "failed_recently": failed_recently(redis, failed, now),
    }


RECENT = 60  # seconds: jobs that failed this recently (deploytool.jobs.model.RECENT)
LATEST = 1000  # the failed registry's entries read for it: the latest to expire, so the latest to fail


def failed_recently(redis, failed, now):
    """Jobs of the failed registry that ended within RECENT seconds (their ended_at)."""
    ids = redis.zrevrange(failed, 0, LATEST - 1)
    pipe = redis.pipeline()
    for job_id in ids:
        pipe.hget(b"rq:job:" + job_id, "ended_at")
    since = now - RECENT
    epoch = utcparse("1970-01-01T00:00:00.000000Z")
    return sum(1 for ended in pipe.execute() if ended and (utcparse(ended.decode()) - epoch).total_seconds() >= since)


def main(names):
    redis = Redis.from_url(os.environ["REDIS_URL"])
    now = time.time()
    hostname = socket.gethostname()
    workers = []
    for w in Worker.all(connection=redis):
        local = w.hostname == hostname
        workers.append({
            "name": w.name, "hostname": w.hostname, "pid": w.pid, "tag": "", "queues": w.queue_names(),
            "concurrency": 1, "busy": 1 if w.get_state() == "busy" else 0, "quiet": False,
            "unit": unit_of(w.pid) if local else None,  # noqa: F821
        })
    others = sorted(set(q.name for q in Queue.all(connection=redis)) - set(names))
    print(json.dumps({
        "system": "rq", "hostname": hostname, "time": now,
        "queues": [queue_stats(redis, name, now) for name in names],
        "other_queues": [{"name": n, "queued": redis.llen(Queue(n, connection=redis).key)} for n in others],
        "workers": workers,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
