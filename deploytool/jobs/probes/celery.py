"""Reads Celery's queues and workers and prints one JSON object. Runs ON A HOST of the app, in the
release, with the interpreter of the app's `celery` and the app's own Celery instance (`-A APP`), so the
broker, its transport options (a Redis key prefix) and credentials are the workers' own; sent by
deploytool (deploytool/jobs/probe.py). Read only: queues are declared passively (never created), the
workers are asked through Celery's remote control (`inspect`), no message is taken.

Usage: python - APP QUEUE...

Per queue: messages waiting in the broker (passive declare, on Redis and RabbitMQ alike), and from the
workers' replies: tasks running (active), prefetched (reserved) and held for an eta (scheduled).
Workers: every node that answered, with its pool's concurrency and the queues it consumes.
"""

import contextlib
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from celery.app.utils import find_app

INSPECT_TIMEOUT = 1.5  # seconds each broadcast waits for the nodes' replies

# unit_of(pid) comes from local.py, sent to the host ahead of this program (deploytool.jobs.systems).


def waiting(app, name):
    """Messages waiting in the queue and its consumers (0, 0 when the queue does not exist yet). Workers
    are counted from their own replies instead: on Redis a consumer leaves no trace in the broker."""
    with app.connection_for_read() as conn:
        channel = conn.channel()
        try:
            ok = channel.queue_declare(queue=name, passive=True)
            return ok.message_count, ok.consumer_count
        except Exception:  # NOT_FOUND: nobody declared it yet (no worker, no task)
            return 0, 0
        finally:
            with contextlib.suppress(Exception):
                channel.close()


def queue_of(task):
    info = task.get("delivery_info") or {}
    return info.get("routing_key") or info.get("queue")


def per_queue(replies, names):
    counts = {n: 0 for n in names}
    for tasks in (replies or {}).values():
        for task in tasks:
            task = task.get("request", task)  # scheduled entries wrap the task in "request"
            q = queue_of(task)
            if q in counts:
                counts[q] += 1
    return counts


def ask_all(app, ask):
    return getattr(app.control.inspect(timeout=INSPECT_TIMEOUT), ask)() or {}


def main(app_name, names):
    sys.path.insert(0, os.getcwd())
    app = find_app(app_name)
    hostname = socket.gethostname()
    # Each broadcast waits the whole timeout for replies: send the five at once.
    asks = ("stats", "active_queues", "active", "reserved", "scheduled")
    with ThreadPoolExecutor(len(asks)) as pool:
        futures = {ask: pool.submit(ask_all, app, ask) for ask in asks}
        replies = {ask: f.result() for ask, f in futures.items()}
    stats, consuming, active = replies["stats"], replies["active_queues"], replies["active"]
    running, reserved = per_queue(active, names), per_queue(replies["reserved"], names)
    scheduled = per_queue(replies["scheduled"], names)
    queues = []
    for name in names:
        count, _ = waiting(app, name)
        queues.append({"name": name, "queued": count, "latency": None, "running": running[name],
                       "reserved": reserved[name], "scheduled": scheduled[name], "retrying": None, "dead": None})
    workers = []
    for node, info in sorted(stats.items()):
        tag, _, node_host = node.partition("@")
        pid = info.get("pid")
        workers.append({
            "name": node, "hostname": node_host, "pid": pid, "tag": tag,
            "queues": [q["name"] for q in consuming.get(node, [])],
            "concurrency": (info.get("pool") or {}).get("max-concurrency", 1),
            # A node quieted with cancel_consumer consumes no queue any more.
            "busy": len(active.get(node, [])), "quiet": not consuming.get(node),
            # Nodes are named after the inventory host (-n app-group-N@HOST); the machine's own name may differ.
            "unit": unit_of(pid) if node_host in (hostname, os.environ.get("DEPLOYTOOL_HOST")) else None,  # noqa: F821
        })
    print(json.dumps({"system": "celery", "hostname": hostname, "time": time.time(), "queues": queues,
                      "other_queues": [], "workers": workers}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
