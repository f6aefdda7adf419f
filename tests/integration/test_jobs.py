"""`jobs.status`, the quiet/busy columns of `workers.status`, and the Redis check before a deploy, on the
sandbox fleet with the sample app's real Sidekiq and RQ workers and the real Redis on redis-a."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import REDIS_URL, SAMPLE_PYTHON, client, client_env, fab, fab_json, ssh, variant, wait_for

pytestmark = pytest.mark.integration

BACKLOG = "jobs-test-backlog"  # queues the inventory variant lists but no running worker works
CELERY_BACKLOG = "jobs-test-celery"
FAILING_RQ = ("/usr/bin/python3", "-c", "import sys; from redis import Redis; from rq import Queue; "
              "Queue('high', connection=Redis.from_url(sys.argv[1])).enqueue('jobs.no_such_job')")


@pytest.fixture
def r() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_timeout=10)


# Through the app's own brokers, with the sample app's Python (Debian's celery and pika, Dramatiq).
BROKER = """
import os, dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
broker = RabbitmqBroker(url=os.environ["RABBITMQ_URL"])
broker.declare_queue("dramatiq")
broker.channel.queue_purge("dramatiq.XQ")
"""
# A message for an actor the app lacks: a real Dramatiq worker moves it to the dead-letter queue (XQ).
DRAMATIQ_DEAD = BROKER + """
broker.enqueue(dramatiq.Message(queue_name="dramatiq", actor_name="no_such_actor", args=(), kwargs={}, options={}))
"""
RABBIT_CLEANUP = BROKER + f"""
broker.channel.queue_delete("{CELERY_BACKLOG}")
"""


def rabbit(script: str) -> None:
    subprocess.run([SAMPLE_PYTHON, "-c", script], env=client_env(), check=True, timeout=60)


def with_backlog_queue(data: dict[str, Any]) -> None:
    data["apps"]["sample"]["workers"]["sidekiq"]["queues"].append(BACKLOG)
    data["apps"]["sample"]["workers"]["celery-rabbit"]["queues"].append(CELERY_BACKLOG)


def rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(q["system"], q["queue"]): q for q in report["queues"]}


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """node-exporter's textfile format, strictly: HELP and TYPE before a metric's samples, one
    `name{label="value",...} number` per line; returns the samples."""
    sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? '
                        r"(\S+)")
    typed: set[str] = set()
    helped: set[str] = set()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("gauge", "counter") and name in helped, line
            typed.add(name)
        else:
            m = sample.fullmatch(line)
            assert m, f"not a sample line: {line!r}"
            assert m.group(1) in typed, f"sample before its TYPE: {line!r}"
            labels = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            key = (m.group(1), labels)
            assert key not in samples, f"duplicate sample: {line!r}"
            samples[key] = float(m.group(3))
    return samples


def test_jobs_status_reports_failed_dead_and_backlog(deployed: None, r: redis.Redis, tmp_path: Path) -> None:
    """Sidekiq, RQ, Celery (on RabbitMQ) and Dramatiq (on RabbitMQ), each with numbers made here."""
    inv = variant(tmp_path, with_backlog_queue)
    state = str(tmp_path / "jobs-state.json")
    # Start from empty dead/failed records, so the numbers below are exactly what this test makes.
    r.delete("dead", "retry", "rq:failed:high", "rq:failed:default", f"queue:{BACKLOG}")
    try:
        # A Sidekiq job of a class the app lacks, with no retries: a real worker sends it to the dead set.
        r.lpush("queue:default", json.dumps({"class": "NoSuchJob", "args": [], "queue": "default",
                                             "jid": "jobs-test-dead", "retry": 0, "enqueued_at": time.time()}))
        # An RQ job whose function does not exist: a real worker puts it in the failed registry.
        subprocess.run([*FAILING_RQ, REDIS_URL], check=True, timeout=60)
        wait_for(lambda: r.zcard("dead") == 1 and r.zcard("rq:failed:high") == 1, 60, "the dead and failed jobs")
        rabbit(DRAMATIQ_DEAD)
        # 3 Celery tasks on a queue no node consumes.
        client("enqueue", "celery-rabbit", "--count", "3", "--queue", CELERY_BACKLOG)
        # A backlog of 7 jobs enqueued two minutes ago, on a queue no running worker works.
        old = time.time() - 120
        for i in range(7):
            r.lpush(f"queue:{BACKLOG}", json.dumps({"class": "SampleJob", "args": [f"b{i}"], "queue": BACKLOG,
                                                   "jid": f"backlog{i}", "enqueued_at": old + i}))

        def dramatiq_dead() -> int:
            dead: int = rows(fab_json("jobs.status", "--inventory", inv, "--app", "sample")[1])[
                ("dramatiq", "dramatiq")]["dead"]
            return dead

        wait_for(lambda: dramatiq_dead() == 1, 60, "the Dramatiq message in the dead-letter queue")
        code, report = fab_json("jobs.status", "--inventory", inv)
        assert code == 0 and report["ok"], report
        got = rows(report)
        celery = got[("celery", CELERY_BACKLOG)]
        assert (celery["queued"], celery["workers"], celery["workers_expected"]) == (3, 0, 4), celery
        # Each Celery node (one per host) answers with its pool of 2; Dramatiq: a consumer per process.
        assert (got[("celery", "celery-redis")]["workers"], got[("celery", "celery-rabbit")]["workers"]) == (4, 4)
        assert got[("dramatiq", "dramatiq")]["workers"] == got[("dramatiq", "dramatiq")]["workers_expected"] == 2
        assert got[("sidekiq", "default")]["dead"] == 1
        assert got[("rq", "high")]["dead"] == 1
        backlog = got[("sidekiq", BACKLOG)]
        assert backlog["queued"] == 7 and backlog["latency"] >= 120 and backlog["workers"] == 0
        # 3 processes x 5 threads on prod-a, 2 x 3 on prod-b; RQ: 2 processes per host.
        assert got[("sidekiq", "default")]["workers_expected"] == 21
        assert got[("rq", "high")]["workers_expected"] == 4
        wait_for(lambda: rows(fab_json("jobs.status", "--inventory", inv)[1])[("sidekiq", "default")]["workers"]
                 == 21, 30, "every Sidekiq process to be seen")

        over = fab("jobs.status", "--inventory", inv, "--max-latency", "60", "--max-dead", "0")
        assert over.returncode == 1, over.stdout + over.stderr
        assert f"over threshold: sample/sidekiq/{BACKLOG}: latency" in over.stdout
        assert "over threshold: sample/rq/high: dead 1 > 0" in over.stdout
        within = fab("jobs.status", "--inventory", inv, "--max-latency", "100000", "--max-dead", "1")
        assert within.returncode == 0, within.stdout + within.stderr

        # The first run with --max-failed-increase records the counts; a new failure then trips it.
        assert fab("jobs.status", "--inventory", inv, "--max-failed-increase", "0", "--state", state).returncode == 0
        subprocess.run([*FAILING_RQ, REDIS_URL], check=True, timeout=60)
        wait_for(lambda: r.zcard("rq:failed:high") == 2, 60, "the second failed job")
        code, report = fab_json("jobs.status", "--inventory", inv, "--max-failed-increase", "0", "--state", state)
        assert code == 1 and rows(report)[("rq", "high")]["failed_increase"] == 1, report
        assert [v["message"] for v in report["violations"]] == ["sample/rq/high: failed increase 1 > 0"]

        prom = fab("jobs.status", "--inventory", inv, "--prometheus")
        assert prom.returncode == 0, prom.stderr
        samples = parse_prometheus(prom.stdout)
        labels = (("app", "sample"), ("queue", BACKLOG), ("system", "sidekiq"))
        assert samples[("deploytool_jobs_queued", labels)] == 7
        assert samples[("deploytool_jobs_dead", (("app", "sample"), ("queue", "high"), ("system", "rq")))] == 2
        assert samples[("deploytool_jobs_up", (("app", "sample"), ("system", "rq")))] == 1
    finally:
        r.delete("dead", "rq:failed:high", f"queue:{BACKLOG}")
        r.srem("queues", BACKLOG)
        rabbit(RABBIT_CLEANUP)


def test_workers_status_shows_quiet_sidekiq_and_busy(deployed: None) -> None:
    def sidekiq_units() -> list[dict[str, Any]]:
        _, data = fab_json("workers.status", "--host", "prod-b")
        return [u for u in data["units"] if u["unit"].startswith("sample-sidekiq@")]

    assert all(u["quiet"] is False and u["busy"] is not None for u in sidekiq_units())
    try:
        assert fab("workers.quiet", "--host", "prod-b", "--group", "sidekiq").returncode == 0
        # Sidekiq records quiet with its next heartbeat (every 5 s).
        wait_for(lambda: all(u["quiet"] is True for u in sidekiq_units()), 30, "quiet in the process hashes")
        table = fab("workers.status", "--host", "prod-b", "--group", "sidekiq")
        # QUIET, BUSY, then the RELEASE its process runs.
        assert re.search(r"sample-sidekiq@1\.service .* yes\s+\d+\s+\d{14}$", table.stdout, re.MULTILINE), table.stdout
    finally:
        assert fab("workers.restart", "--host", "prod-b", "--group", "sidekiq").returncode == 0


def test_second_app_from_another_inventory_is_refused(deployed: None, tmp_path: Path) -> None:
    def other_app(data: dict[str, Any]) -> None:
        sample = data["apps"].pop("sample")
        data["apps"]["other"] = {
            "roles": ["app"], "source": sample["source"], "deploy_to": "/srv/other", "redis": REDIS_URL,
            "workers": {"jobs": {"kind": "sidekiq", "queues": ["other"], "command": sample["workers"]["sidekiq"]
                                 ["command"]},
                        "mail": {"kind": "rq", "queues": ["other-mail"]}},
        }
        for host in data["hosts"].values():
            host.pop("apps", None)

    inv = variant(tmp_path, other_app, name="other.yml")
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-a")
    assert code == 1, report
    [host] = report["hosts"]
    assert host["status"] == "failed" and "redis check" in host["error"], host
    # Named by their tags and units: the first app's workers, on both of its hosts.
    assert "sidekiq worker sample-sidekiq-1 (sample-sidekiq@1.service on prod-a" in host["error"], host
    assert re.search(r"rq worker \w+ \(sample-rq@\d\.service on prod-a", host["error"]), host
    assert "sample-sidekiq-2 (on prod-b" in host["error"], host
    assert ssh("prod-a", "test -e /srv/other", check=False).returncode == 1  # nothing was touched


def test_redis_namespace_reaches_celery_as_its_key_prefix(deployed: None, r: redis.Redis, tmp_path: Path) -> None:
    # The inventory's redis_namespace is not a setting that does nothing: the units pass it to the
    # workers, and the sample app's Celery-on-Redis uses it as kombu's global key prefix.
    r.delete("sample:_kombu.binding.celery-redis")
    inv = variant(tmp_path, lambda d: d["apps"]["sample"].update(redis_namespace="sample"))
    # Running nodes listen under the old prefix, where a quiet under the new one cannot reach them:
    # a namespace is changed with the Celery workers stopped (docs/jobs.md).
    assert fab("workers.stop", "--group", "celery-redis").returncode == 0
    try:
        d = fab("deploy", "--inventory", inv)
        assert d.returncode == 0, d.stderr
        # A Celery worker declares its queue's binding when it starts: under the prefix now.
        wait_for(lambda: bool(r.exists("sample:_kombu.binding.celery-redis")), 60, "the prefixed binding")
        # The next deploy quiets the nodes through the prefix, and jobs.status reads them through it.
        d = fab("deploy", "--inventory", inv)
        assert d.returncode == 0, d.stderr
        # Every node answers through the prefix once it listens (a node just restarted takes a moment).
        wait_for(lambda: rows(fab_json("jobs.status", "--inventory", inv, "--app", "sample")[1])[
            ("celery", "celery-redis")]["workers"] == 4, 60, "both Celery-on-Redis nodes to answer")
    finally:
        assert fab("workers.stop", "--inventory", inv, "--group", "celery-redis").returncode == 0
        d = fab("deploy")
        assert d.returncode == 0, d.stderr
        r.delete("sample:_kombu.binding.celery-redis")
