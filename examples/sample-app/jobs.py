"""The sample app's RQ jobs: `rq worker --url REDIS_URL high default`, started in the release dir.

rq imports `jobs.sample_job` by name from its working directory, which is the release.
"""

import os
import time

from rq import get_current_job


def sample_job(job_id: str, seconds: float | None = None) -> None:
    """Sleep a little (or `seconds`), then record this run, so a client can count completions and
    duplicates. Self-contained, unlike record.py: a bare `rq worker --url` without REDIS_URL runs it too."""
    redis = get_current_job().connection
    redis.sadd("sample:started:rq", job_id)
    time.sleep(float(seconds if seconds is not None else os.environ.get("SAMPLE_JOB_SECONDS", "0.05")))
    pipe = redis.pipeline()
    pipe.sadd("sample:done:rq", job_id)
    pipe.hincrby("sample:runs:rq", job_id, 1)
    pipe.execute()
