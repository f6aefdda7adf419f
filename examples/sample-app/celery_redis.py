"""Celery on Redis: `celery -A celery_redis worker -Q celery-redis ...` (the `celery-redis` group).

The broker is the app's Redis (`REDIS_URL`, set by the unit and the env file). Default acks (before the
task runs): a warm shutdown finishes running tasks and puts back the ones it had not started.
"""

import os

from celery import Celery

import celery_tasks

app = Celery("sample", broker=os.environ["REDIS_URL"])
app.conf.update(worker_hijack_root_logger=False, task_default_queue="celery-redis")
celery_tasks.register(app, "celery-redis")
