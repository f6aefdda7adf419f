#!/usr/bin/python3
"""Enqueue sample jobs and count what the workers did; prints JSON.

Runs with the system python (Debian's python3-redis and python3-rq):

    /usr/bin/python3 client.py enqueue rq --count 200
    /usr/bin/python3 client.py enqueue sidekiq --rate 50 --duration 30   # continuously, e.g. during a deploy
    /usr/bin/python3 client.py count sidekiq --wait 30                   # waits until none is missing
    /usr/bin/python3 client.py reset rq

Every enqueued id is added to sample:enqueued:<kind>; workers add it to sample:done:<kind> and count
its runs in sample:runs:<kind>, so missing = enqueued - done and duplicates = ids run more than once.
"""

import argparse
import json
import os
import secrets
import signal
import sys
import time

from redis import Redis
from rq import Queue

KINDS = ("sidekiq", "rq")
DEFAULT_REDIS = "redis://10.213.0.21:6379/0"


def keys(kind):
    return {
        "enqueued": f"sample:enqueued:{kind}",
        "done": f"sample:done:{kind}",
        "runs": f"sample:runs:{kind}",
    }


def push_sidekiq(redis, queue, job_id):
    """Sidekiq's own wire format: JSON on the list queue:<name>, and the name in the set `queues`."""
    now = time.time()
    job = {
        "class": "SampleJob",
        "args": [job_id],
        "queue": queue,
        "jid": secrets.token_hex(12),
        "retry": True,
        "created_at": now,
        "enqueued_at": now,
    }
    pipe = redis.pipeline()
    pipe.sadd("queues", queue)
    pipe.lpush(f"queue:{queue}", json.dumps(job))
    pipe.execute()


def enqueue(redis, kind, queue, count, rate, duration):
    run = secrets.token_hex(4)  # ids stay unique across client runs
    push = (lambda i: push_sidekiq(redis, queue, i)) if kind == "sidekiq" else None
    rq_queue = Queue(queue, connection=redis) if kind == "rq" else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    total = count if not rate else int(rate * duration) if duration else sys.maxsize
    started = time.monotonic()
    sent = 0
    while sent < total and not stop:
        if rate:  # pace to the rate, from the start time, so slow pushes do not drift it
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        job_id = f"{run}-{sent}"
        redis.sadd(keys(kind)["enqueued"], job_id)
        if push:
            push(job_id)
        else:
            rq_queue.enqueue("jobs.sample_job", job_id, job_id=f"sample-{job_id}")  # findable by id
        sent += 1
    return {"kind": kind, "queue": queue, "run": run, "enqueued": sent, "seconds": round(time.monotonic() - started, 3)}


def count(redis, kind, wait):
    k = keys(kind)
    deadline = time.monotonic() + wait
    while True:
        enqueued = redis.smembers(k["enqueued"])
        done = redis.smembers(k["done"])
        missing = enqueued - done
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    runs = redis.hgetall(k["runs"])
    duplicates = sorted(i.decode() for i, n in runs.items() if int(n) > 1)
    return {
        "kind": kind,
        "enqueued": len(enqueued),
        "done": len(done & enqueued),
        "missing": len(missing),
        "duplicates": len(duplicates),
        "duplicate_ids": duplicates[:20],
        "missing_ids": sorted(i.decode() for i in missing)[:20],
    }


def reset(redis, kind):
    redis.delete(*keys(kind).values())
    return {"kind": kind, "reset": True}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("enqueue", help="enqueue --count jobs, or at --rate per second")
    e.add_argument("kind", choices=KINDS)
    e.add_argument("--count", type=int, default=100)
    e.add_argument("--rate", type=float, default=0, help="jobs per second; with --duration 0: until SIGTERM")
    e.add_argument("--duration", type=float, default=0)
    e.add_argument("--queue", default="default")
    c = sub.add_parser("count", help="count completions, missing jobs and duplicates")
    c.add_argument("kind", choices=KINDS)
    c.add_argument("--wait", type=float, default=0, help="seconds to wait for missing jobs")
    r = sub.add_parser("reset", help="forget enqueued and completed jobs")
    r.add_argument("kind", choices=KINDS)
    args = parser.parse_args(argv)

    redis = Redis.from_url(args.redis, socket_timeout=10)
    if args.command == "enqueue":
        result = enqueue(redis, args.kind, args.queue, args.count, args.rate, args.duration)
    elif args.command == "count":
        result = count(redis, args.kind, args.wait)
    else:
        result = reset(redis, args.kind)
    print(json.dumps(result))
    return 1 if result.get("missing") else 0


if __name__ == "__main__":
    sys.exit(main())
