"""Celery on Redis: `celery -A celery_redis worker -Q celery-redis ...` (the `celery-redis` group).

The broker is the app's Redis (`REDIS_URL`, set by the unit and the env file). Default acks (before the
task runs): a warm shutdown finishes running tasks and puts back the ones it had not started.
"""

import os

from celery import Celery

import celery_tasks

# When the app shares its Redis DB with other apps, deploytool passes the inventory's redis_namespace;
# kombu then prefixes every key it writes, so the apps never see each other's queues.
NAMESPACE = os.environ.get("DEPLOYTOOL_REDIS_NAMESPACE")

app = Celery("sample", broker=os.environ["REDIS_URL"])
app.conf.update(worker_hijack_root_logger=False, task_default_queue="celery-redis",
                broker_transport_options={"global_keyprefix": f"{NAMESPACE}:"} if NAMESPACE else {})
celery_tasks.register(app, "celery-redis")
