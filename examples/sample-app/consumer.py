#!/usr/bin/python3
"""A plain RabbitMQ consumer with manual acks, run as deploytool's `command` kind: `python3 consumer.py`.

What Sneakers does for Ruby, by hand with pika: one unacked message at a time (basic_qos prefetch 1),
acked only after the work is done. A consumer killed mid-message never acks it, so RabbitMQ redelivers
it (flagged `redelivered`) to the next consumer. SIGTERM finishes the message in hand, then exits.

Each message body is JSON: {"id": "...", "seconds": null or a number}.
"""

import json
import os
import signal
import sys

import pika

import record

QUEUE = "consumer"
KIND = "consumer"


def main() -> int:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    channel = connection.channel()
    channel.queue_declare(QUEUE, durable=True)
    channel.basic_qos(prefetch_count=1)
    print(f"consuming {QUEUE}", flush=True)
    # A timeout of 1 s lets the loop see SIGTERM while the queue is idle; a message in hand is finished.
    for method, _properties, body in channel.consume(QUEUE, inactivity_timeout=1):
        if method is not None:
            job = json.loads(body)
            record.run(KIND, job["id"], job.get("seconds"), redelivered=method.redelivered)
            channel.basic_ack(method.delivery_tag)
        if stopping:
            break
    channel.cancel()  # any prefetched, unacked message goes back to the queue
    connection.close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
