"""Are a group's Dramatiq workers on this host ready? Runs ON A HOST, in the release the workers run,
with the interpreter of the group's `dramatiq` and the app's broker module (the worker's first
argument), so the broker is theirs (deploytool.commands.ready). Read only: RabbitMQ queues are
declared passively; on Redis only the heartbeats are read.

Usage: python - MODULE MODE STATE SPEC   (SPEC: JSON {"queues": [...], "processes": N}; STATE: what
`mark` printed, for `check`)

What Dramatiq itself shows of its workers:
- RabbitMQ: each worker process consumes each of its queues and their delay queues `<q>.DQ` (one
  consumer each), and the broker counts the consumers of a queue. Consumers cannot be told apart by
  host, so `mark` (run with this host's workers stopped) prints the counts, and `check` exits 0
  once every queue has at least N more consumers than marked.
- Redis: every broker instance (one per process) writes a heartbeat under a random id with each
  command. `mark` prints the ids seen; `check` exits 0 once at least N new ids beat. (A process that
  only sends messages beats too: the units' check, that the worker processes stay up, covers them.)
"""

import importlib
import json
import os
import sys
import time

import dramatiq
from dramatiq.common import dq_name


def rabbitmq_counts(broker, queues):
    import pika

    connection = pika.BlockingConnection(broker.parameters)
    counts = {}
    try:
        for name in [n for q in queues for n in (q, dq_name(q))]:
            channel = connection.channel()
            try:
                counts[name] = channel.queue_declare(queue=name, passive=True).method.consumer_count
            except pika.exceptions.ChannelClosedByBroker:  # 404: nobody declared it yet
                counts[name] = 0
            finally:
                if channel.is_open:
                    channel.close()
    finally:
        connection.close()
    return counts


def redis_beats(broker):
    beats = broker.client.zrange(f"{broker.namespace}:__heartbeats__", 0, -1, withscores=True)
    return {key.decode(): score for key, score in beats}


def main(module, mode, state, spec):
    spec = json.loads(spec)
    sys.path.insert(0, os.getcwd())
    importlib.import_module(module)  # sets the app's broker, as the worker does
    broker = dramatiq.get_broker()
    rabbit = hasattr(broker, "parameters")  # RabbitmqBroker
    now = rabbit_counts = None
    if rabbit:
        rabbit_counts = rabbitmq_counts(broker, spec["queues"])
    else:
        now = redis_beats(broker)
    if mode == "mark":
        print(json.dumps({"rabbitmq": rabbit_counts, "redis": now, "time": time.time()}))
        return 0
    marked = json.loads(state)
    wanted = spec["processes"]
    if rabbit:
        before = marked.get("rabbitmq") or {}
        short = [f"{q}: {n} consumers, {before.get(q, 0)} before the start + {wanted} wanted"
                 for q, n in rabbit_counts.items() if n < before.get(q, 0) + wanted]
        print("; ".join(short) or f"every queue has its {wanted} new consumer(s)")
        return 1 if short else 0
    since_ms = marked["time"] * 1000
    new = [i for i, beat in now.items() if i not in (marked.get("redis") or {}) and beat >= since_ms]
    print(f"{len(new)} new worker heartbeat(s) in Redis, {wanted} wanted")
    return 0 if len(new) >= wanted else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
