"""Reads Dramatiq's queues and prints one JSON object. Runs ON A HOST of the app, in the release, with the
interpreter of the app's `dramatiq` and the app's own broker module (the worker's first argument), so
the broker, its URL and its Redis namespace are the workers' own; sent by deploytool
(deploytool/jobs/probe.py). Read only: RabbitMQ queues are declared passively (never created), no
message is taken, nothing is written to Redis.

Usage: python - MODULE QUEUE...

Per queue: the queue (waiting), its delay queue `<q>.DQ` (scheduled, and retries waiting their
backoff) and its dead-letter queue `<q>.XQ` (dead). RabbitMQ: consumers of the queue (one per worker
process) from the passive declare; running messages are RabbitMQ's unacked ones, which a passive
declare does not tell, so they are left out. Redis: running from the workers' ack sets, the age of the
oldest message; its workers cannot be told from the processes that only send messages, so they are
not reported.
"""

import importlib
import json
import os
import socket
import sys
import time

import dramatiq
from dramatiq.common import dq_name, xq_name


def rabbitmq(broker, names):
    import pika

    connection = pika.BlockingConnection(broker.parameters)

    def declare(name):
        channel = connection.channel()
        try:
            ok = channel.queue_declare(queue=name, passive=True).method
            return ok.message_count, ok.consumer_count
        except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet
            return 0, 0
        finally:
            if channel.is_open:
                channel.close()

    queues = []
    for name in names:
        waiting, consumers = declare(name)
        delayed, _ = declare(dq_name(name))
        dead, _ = declare(xq_name(name))
        queues.append({"name": name, "queued": waiting, "latency": None, "running": None,
                       "scheduled": delayed, "retrying": None, "dead": dead, "consumers": consumers})
    connection.close()
    return queues, None  # workers: the consumer counts stand for them


RECENT = 60  # seconds: messages dead-lettered this recently (deploytool.jobs.model.RECENT)


def redis(broker, names, now):
    client, ns = broker.client, broker.namespace
    acks = {}  # messages fetched by a worker and not acked yet, per queue (`.DQ`: held for their eta)
    prefix = f"{ns}:__acks__."
    for key in client.scan_iter(match=prefix + "*", count=1000):
        _, _, queue = key.decode()[len(prefix):].partition(".")  # <worker id>.<queue>
        acks[queue] = acks.get(queue, 0) + client.scard(key)
    queues = []
    for name in names:
        oldest = client.lindex(f"{ns}:{name}", 0)
        latency = 0.0
        if oldest is not None:
            raw = client.hget(f"{ns}:{name}.msgs", oldest)
            stamp = json.loads(raw).get("message_timestamp") if raw else None
            latency = round(max(now - stamp / 1000.0, 0.0), 3) if stamp else 0.0
        queues.append({"name": name, "queued": client.llen(f"{ns}:{name}"), "latency": latency,
                       "running": acks.get(name, 0),
                       "scheduled": client.llen(f"{ns}:{dq_name(name)}") + acks.get(dq_name(name), 0),
                       "retrying": None, "dead": client.zcard(f"{ns}:{xq_name(name)}"),
                       # Dead-lettered messages are scored by when, in milliseconds.
                       "failed_recently": client.zcount(f"{ns}:{xq_name(name)}", (now - RECENT) * 1000, "+inf")})
    # Workers are not told apart: Redis records a heartbeat for every broker that sends a message too.
    return queues, None


def main(module, names):
    sys.path.insert(0, os.getcwd())
    importlib.import_module(module)  # sets the app's broker, as the worker does
    broker = dramatiq.get_broker()
    now = time.time()
    if hasattr(broker, "parameters"):  # RabbitmqBroker
        queues, workers = rabbitmq(broker, names)
    else:
        queues, workers = redis(broker, names, now)
    print(json.dumps({"system": "dramatiq", "hostname": socket.gethostname(), "time": now, "queues": queues,
                      "other_queues": [], "workers": workers}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
