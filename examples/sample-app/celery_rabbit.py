"""Celery on RabbitMQ with late acks: `celery -A celery_rabbit worker -Q celery-rabbit ...`.

`RABBITMQ_URL` (with the password) comes from the env file, shared/config/app.env. A task is acked
after it ran (acks_late) and each process reserves one task at a time (prefetch multiplier 1), so a
worker killed mid-task loses nothing: RabbitMQ hands the unacked task to another worker.
"""

import os

from celery import Celery

import celery_tasks

app = Celery("sample", broker=os.environ["RABBITMQ_URL"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    task_default_queue="celery-rabbit",
)
celery_tasks.register(app, "celery-rabbit")
