"""The sample app's Celery task, shared by its two Celery apps (celery_redis, celery_rabbit).

Enqueued by name (`sample.job`), so a client needs no import of the app: `send_task("sample.job", ...)`.
"""

from celery import Celery

import record

TASK = "sample.job"


def register(app: Celery, kind: str) -> None:
    @app.task(name=TASK)
    def job(job_id: str, seconds: float | None = None) -> None:
        record.run(kind, job_id, seconds)
