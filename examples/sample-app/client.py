#!/usr/bin/python3
"""Enqueue sample jobs for every kind of worker and count what the workers did; prints JSON.

Runs with the sample venv's python, which has Dramatiq (PyPI) and sees Debian's packages (redis, rq,
celery, pika); every kind but dramatiq also runs with the system python:

    PY=/opt/deploytool-sample/venv/bin/python
    $PY client.py enqueue rq --count 200
    $PY client.py enqueue sidekiq --rate 50 --duration 30     # continuously, e.g. during a deploy
    $PY client.py enqueue consumer --count 1 --seconds 10      # one long job
    $PY client.py count celery-rabbit --wait 30                # waits until none is missing
    $PY client.py reset dramatiq

Kinds: sidekiq, rq, celery-redis, celery-rabbit, dramatiq, consumer (the sample app's worker groups).
Jobs for the RabbitMQ kinds need RABBITMQ_URL in the environment (it holds a password: never an
argument). Every enqueued id is added to sample:enqueued:<kind> in Redis; workers add it to
sample:done:<kind> and count its runs in sample:runs:<kind>, so missing = enqueued - done and
duplicates = ids run more than once.
"""

import argparse
import atexit
import json
import os
import secrets
import signal
import sys
import time

from redis import Redis

DEFAULT_REDIS = "redis://10.213.0.21:6379/0"
# Each kind's queue in the sample app (inventories/sandbox.yml).
DEFAULT_QUEUES = {
    "sidekiq": "default",
    "rq": "default",
    "celery-redis": "celery-redis",
    "celery-rabbit": "celery-rabbit",
    "dramatiq": "dramatiq",
    "consumer": "consumer",
}
KINDS = tuple(DEFAULT_QUEUES)


def keys(kind):
    return {name: f"sample:{name}:{kind}" for name in ("enqueued", "done", "runs", "started", "where",
                                                        "redelivered")}


def amqp_url():
    url = os.environ.get("RABBITMQ_URL")
    if not url:
        sys.exit("client: set RABBITMQ_URL (amqp://USER:PASSWORD@HOST/VHOST) for the RabbitMQ kinds")
    return url


# --- one pusher per kind, made from (redis URL, Redis client, queue): push(job_id, seconds) --------


def sidekiq_pusher(redis_url, redis, queue):
    """Sidekiq's own wire format: JSON on the list queue:<name>, and the name in the set `queues`."""

    def push(job_id, seconds):
        now = time.time()
        job = {
            "class": "SampleJob",
            "args": [job_id] if seconds is None else [job_id, seconds],
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

    return push


def rq_pusher(redis_url, redis, queue):
    from rq import Queue

    rq_queue = Queue(queue, connection=redis)

    def push(job_id, seconds):
        rq_queue.enqueue("jobs.sample_job", job_id, seconds, job_id=f"sample-{job_id}")  # findable by id

    return push


def celery_push(broker_url, queue):
    from celery import Celery

    app = Celery("sample-client", broker=broker_url)
    producer = app.producer_pool.acquire(block=True)  # one connection for the whole run
    # Close the connection with the broker's handshake before exiting: a socket the kernel closes with
    # unread input from the broker is reset, and the broker may drop publishes it had not read yet.
    atexit.register(producer.connection.close)

    def push(job_id, seconds):
        # By name: the client needs none of the app's code.
        app.send_task("sample.job", args=[job_id, seconds], queue=queue, producer=producer)

    return push


def celery_redis_pusher(redis_url, redis, queue):
    return celery_push(redis_url, queue)


def celery_rabbit_pusher(redis_url, redis, queue):
    return celery_push(amqp_url(), queue)


def dramatiq_pusher(redis_url, redis, queue):
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=amqp_url())

    def push(job_id, seconds):
        # By name, like the Celery kinds.
        broker.enqueue(dramatiq.Message(queue_name=queue, actor_name="sample_job", args=(job_id, seconds),
                                        kwargs={}, options={}))

    return push


def consumer_pusher(redis_url, redis, queue):
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url()))
    atexit.register(connection.close)  # as for Celery: a handshake, not a reset, ends the publishes
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    persistent = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def push(job_id, seconds):
        body = json.dumps({"id": job_id, "seconds": seconds})
        channel.basic_publish(exchange="", routing_key=queue, body=body, properties=persistent)

    return push


PUSHERS = {
    "sidekiq": sidekiq_pusher,
    "rq": rq_pusher,
    "celery-redis": celery_redis_pusher,
    "celery-rabbit": celery_rabbit_pusher,
    "dramatiq": dramatiq_pusher,
    "consumer": consumer_pusher,
}


def enqueue(redis_url, kind, queue, count, rate, duration, seconds):
    redis = Redis.from_url(redis_url, socket_timeout=10)
    run = secrets.token_hex(4)  # ids stay unique across client runs
    push = PUSHERS[kind](redis_url, redis, queue)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    total = count if not rate else int(rate * duration) if duration else sys.maxsize
    started = time.monotonic()
    sent = 0
    ids = []
    while sent < total and not stop:
        if rate:  # pace to the rate, from the start time, so slow pushes do not drift it
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        job_id = f"{run}-{sent}"
        redis.sadd(keys(kind)["enqueued"], job_id)  # before the push: a fast worker may finish it at once
        push(job_id, seconds)
        sent += 1
        if len(ids) < 20:
            ids.append(job_id)
    return {"kind": kind, "queue": queue, "run": run, "enqueued": sent, "ids": ids,
            "seconds": round(time.monotonic() - started, 3)}


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
        "redelivered": redis.scard(k["redelivered"]),
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
    e.add_argument("--queue", help="default: the kind's queue in the sample app")
    e.add_argument("--seconds", type=float, help="how long each job works (default: SAMPLE_JOB_SECONDS)")
    c = sub.add_parser("count", help="count completions, missing jobs and duplicates")
    c.add_argument("kind", choices=KINDS)
    c.add_argument("--wait", type=float, default=0, help="seconds to wait for missing jobs")
    r = sub.add_parser("reset", help="forget enqueued and completed jobs")
    r.add_argument("kind", choices=KINDS)
    args = parser.parse_args(argv)

    redis = Redis.from_url(args.redis, socket_timeout=10)
    if args.command == "enqueue":
        queue = args.queue or DEFAULT_QUEUES[args.kind]
        result = enqueue(args.redis, args.kind, queue, args.count, args.rate, args.duration, args.seconds)
    elif args.command == "count":
        result = count(redis, args.kind, args.wait)
    else:
        result = reset(redis, args.kind)
    print(json.dumps(result))
    return 1 if result.get("missing") else 0


if __name__ == "__main__":
    sys.exit(main())
