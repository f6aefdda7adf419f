"""Every worker kind of the sample app on its real broker: Sidekiq and RQ on Redis, Celery on Redis and on
RabbitMQ (acks_late), Dramatiq on RabbitMQ and a manual-ack RabbitMQ consumer (the `command` kind), all
counted by the sample client in Redis: stop within the grace, no job lost over a deploy under load,
Celery's quiet, a consumer killed mid-message. (A reboot bringing every kind back: test_workers.py.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import redis
from helpers import (
    APP_HOSTS,
    RABBIT_HOST,
    REDIS_URL,
    client,
    client_argv,
    client_env,
    fab,
    ssh,
    wait_for,
)

pytestmark = pytest.mark.integration

RABBIT_KINDS = ("celery-rabbit", "dramatiq", "consumer")
NEW_KINDS = ("celery-redis", *RABBIT_KINDS)
ALL_KINDS = ("sidekiq", "rq", *NEW_KINDS)
# The kind of each sample group, for the messages deploytool prints about them.
UNQUIETABLE = "command, dramatiq, rq"


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    yield conn
    conn.close()


def started(r: redis.Redis, kind: str, job_id: str) -> bool:
    return bool(r.sismember(f"sample:started:{kind}", job_id))


def runs(r: redis.Redis, kind: str, job_id: str) -> int:
    return int(r.hget(f"sample:runs:{kind}", job_id) or 0)


def rabbit_queue(name: str) -> tuple[int, int]:
    """(messages ready + unacked, consumers) of a queue in the sample vhost, as RabbitMQ counts them."""
    out = ssh(RABBIT_HOST, "sudo -n rabbitmqctl -q list_queues -p sample --no-table-headers "
                           "name messages consumers").stdout
    rows = {f[0]: (int(f[1]), int(f[2])) for f in (line.split() for line in out.splitlines()) if len(f) == 3}
    return rows[name]


def test_stop_lets_a_running_job_of_every_kind_finish(deployed: None, r: redis.Redis) -> None:
    """`workers.stop` sends each kind its stop signal and systemd waits the grace: a job running then
    finishes, once, before the worker exits (KillMode and signals as the kinds table says)."""
    for kind in ALL_KINDS:
        client("reset", kind)
    long = {kind: client("enqueue", kind, "--count", "1", "--seconds", "4")["ids"][0] for kind in ALL_KINDS}
    wait_for(lambda: all(started(r, k, i) for k, i in long.items()), 60, "a long job of every kind to start")
    stop = fab("workers.stop")
    try:
        assert stop.returncode == 0, stop.stderr
        assert {k: runs(r, k, i) for k, i in long.items()} == dict.fromkeys(ALL_KINDS, 1)
    finally:
        assert fab("workers.start").returncode == 0


def test_no_job_of_any_kind_lost_over_a_deploy_under_load(deployed: None, r: redis.Redis) -> None:
    """Both app hosts deployed (rolling restarts) while jobs of the four broker-backed kinds keep coming;
    Sidekiq and RQ have their own, longer run in test_workers.py."""
    for kind in NEW_KINDS:
        client("reset", kind)
    enqueuers = [subprocess.Popen(client_argv("enqueue", kind, "--rate", "10", "--duration", "0"),
                                  env=client_env(), stdout=subprocess.PIPE, text=True) for kind in NEW_KINDS]

    def enqueued_at_least(n: int) -> bool:
        return all(r.scard(f"sample:enqueued:{kind}") >= n for kind in NEW_KINDS)

    try:
        wait_for(lambda: enqueued_at_least(20), 60, "the load to start")
        d = fab("deploy", "--host", ",".join(APP_HOSTS))
        assert d.returncode == 0, d.stderr
        # Load on both sides of the deploy: at least 200 jobs of each kind in all (20 s at 10/s).
        wait_for(lambda: enqueued_at_least(200), 120, "200 jobs of each kind")
    finally:
        for p in enqueuers:
            p.terminate()
    sent = [json.loads(p.communicate(timeout=60)[0]) for p in enqueuers]
    assert all(s["enqueued"] >= 200 for s in sent), sent
    for kind in NEW_KINDS:
        c = client("count", kind, "--wait", "120")
        print(f"deploy under load: {kind}: enqueued {c['enqueued']}, done {c['done']}, lost {c['missing']}, "
              f"duplicates {c['duplicates']}, redelivered {c['redelivered']}")
        assert c["missing"] == 0, c


@pytest.mark.parametrize("group", ["celery-redis", "celery-rabbit"])
def test_celery_quiet_takes_no_new_task_while_one_finishes(deployed: None, r: redis.Redis, group: str) -> None:
    client("reset", group)
    [long_id] = client("enqueue", group, "--count", "1", "--seconds", "5")["ids"]
    wait_for(lambda: started(r, group, long_id), 60, "the long task to start")

    quiet = fab("workers.quiet", "--group", group)  # cancel_consumer on every node of the group
    try:
        assert quiet.returncode == 0, quiet.stderr
        new = client("enqueue", group, "--count", "10")["ids"]
        wait_for(lambda: runs(r, group, long_id) == 1, 60, "the running task to finish")
        # No node consumes the queue any more, so every new task is still in it, and none has started.
        if group == "celery-rabbit":
            assert rabbit_queue(group) == (10, 0)
        else:
            assert r.llen(group) == 10
        assert not any(started(r, group, i) for i in new)
    finally:
        restart = fab("workers.restart", "--group", group)
    assert restart.returncode == 0, restart.stderr
    c = client("count", group, "--wait", "60")
    assert (c["missing"], c["done"], c["duplicates"]) == (0, 11, 0), c


def test_quiet_of_a_mixed_app_reports_kinds_without_quiet(deployed: None) -> None:
    """Kinds without a quiet mechanism are reported, and do not fail a plain quiet of the app; --strict
    fails it for pipelines that want every kind quiet."""
    try:
        q = fab("workers.quiet", "--host", "prod-b")
        assert q.returncode == 0, q.stderr
        assert f"not supported by {UNQUIETABLE}" in q.stdout + q.stderr
        strict = fab("workers.quiet", "--host", "prod-b", "--strict")
        assert strict.returncode == 1 and f"not supported by {UNQUIETABLE}" in strict.stderr
    finally:
        restart = fab("workers.restart", "--host", "prod-b")
    assert restart.returncode == 0, restart.stderr


def test_consumer_killed_mid_message_gets_it_redelivered_and_done(deployed: None, r: redis.Redis) -> None:
    """The manual-ack consumer dies by SIGKILL while working a message: it never acked, so RabbitMQ hands
    the message out again (flagged redelivered) and it is done."""
    client("reset", "consumer")
    [job_id] = client("enqueue", "consumer", "--count", "1", "--seconds", "5")["ids"]
    wait_for(lambda: started(r, "consumer", job_id), 60, "the consumer to take the message")
    where = r.hget("sample:where:consumer", job_id)
    assert where is not None
    host, pid = where.decode().split()
    ssh(host, f"kill -KILL {pid}")  # the worker runs as the deploy user
    c = client("count", "consumer", "--wait", "60")
    assert (c["missing"], c["done"], c["redelivered"]) == (0, 1, 1), c
    assert r.sismember("sample:redelivered:consumer", job_id) and runs(r, "consumer", job_id) == 1
    # systemd restarted the killed consumer (Restart=on-failure), which consumes the queue again.
    wait_for(lambda: rabbit_queue("consumer") == (0, len(APP_HOSTS)), 60, "both consumers on the queue")
