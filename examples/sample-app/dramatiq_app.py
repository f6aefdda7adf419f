"""Dramatiq on RabbitMQ: `dramatiq dramatiq_app -Q dramatiq --processes 1 --threads N ...`.

Run by the Dramatiq of /opt/deploytool-sample/venv (PyPI; see requirements.txt). Dramatiq acks a message
after its actor returned; unacked messages go back to the queue when a worker's connection closes.
"""

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

import record

QUEUE = "dramatiq"
ACTOR = "sample_job"

broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE)
def sample_job(job_id: str, seconds: float | None = None) -> None:
    record.run("dramatiq", job_id, seconds)
