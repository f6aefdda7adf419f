"""Worker management on the sandbox fleet with the sample app's real Sidekiq and RQ workers and the real
Redis on redis-a: start at boot, quiet, no job lost across deploys, crash restart, shrinking a group."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import (
    APP_HOSTS,
    CLIENT,
    REDIS_URL,
    client,
    fab,
    fab_json,
    ssh,
    variant,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def r() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_timeout=10)


def unit_states(host: str) -> dict[str, dict[str, Any]]:
    _, data = fab_json("workers.status", "--host", host)
    return {u["unit"]: u for u in data["units"]}


def test_status_after_deploy_lists_every_instance(deployed: None) -> None:
    code, data = fab_json("workers.status")
    assert code == 0 and data["ok"]
    units = {(u["host"], u["unit"]) for u in data["units"]}
    assert {("prod-a", f"sample-sidekiq@{i}.service") for i in (1, 2, 3)} <= units
    assert ("prod-a", "sample-sidekiq@4.service") not in units
    assert {("prod-b", f"sample-sidekiq@{i}.service") for i in (1, 2)} <= units
    assert ("prod-b", "sample-sidekiq@3.service") not in units
    assert all(u["active"] == "active" and u["enabled"] == "enabled" for u in data["units"])


def test_quiet_sidekiq_takes_no_new_jobs_and_finishes_running_one(deployed: None, r: redis.Redis) -> None:
    r.delete("queue:quiet-test", "sample:started:sidekiq", "sample:done:sidekiq")
    long_id = f"long-{time.time_ns()}"
    push(r, "default", long_id, seconds=4)
    wait_for(lambda: bool(r.sismember("sample:started:sidekiq", long_id)), 30, "the long job to start")

    quiet = fab("workers.quiet", "--group", "sidekiq")
    assert quiet.returncode == 0, quiet.stderr
    ids = [f"q-{time.time_ns()}-{i}" for i in range(20)]
    for i in ids:
        push(r, "default", i)
    # The running job finishes while quiet ...
    wait_for(lambda: bool(r.sismember("sample:done:sidekiq", long_id)), 30, "the running job to finish")
    # ... and nothing new was taken: Sidekiq fetches with a 2 s blocking pop, so give it more than that.
    time.sleep(3)
    assert r.llen("queue:default") == len(ids)
    assert not any(r.sismember("sample:done:sidekiq", i) for i in ids)

    restart = fab("workers.restart", "--group", "sidekiq")
    assert restart.returncode == 0, restart.stderr
    wait_for(lambda: all(r.sismember("sample:done:sidekiq", i) for i in ids), 60, "the queue to drain")


def test_quiet_of_a_kind_without_quiet_is_a_note_and_fails_only_with_strict(deployed: None) -> None:
    before = unit_states("prod-a")
    q = fab("workers.quiet", "--host", "prod-a", "--group", "rq")
    assert q.returncode == 0 and "note: prod-a: sample: quiet not supported by rq" in q.stderr, q.stderr
    strict = fab("workers.quiet", "--host", "prod-a", "--group", "rq", "--strict")
    assert strict.returncode == 1 and "not supported by rq" in strict.stderr
    # Nothing was done to the RQ workers: the same processes still run, still taking jobs.
    after = unit_states("prod-a")
    rq = [u for u in before if u.startswith("sample-rq@")]
    assert rq and all(after[u]["active"] == "active" and after[u]["main_pid"] == before[u]["main_pid"] for u in rq)


def push(r: redis.Redis, queue: str, job_id: str, seconds: float | None = None) -> None:
    """A Sidekiq job in Sidekiq's own wire format (the sample app's SampleJob)."""
    now = time.time()
    args: list[Any] = [job_id] if seconds is None else [job_id, seconds]
    job = {"class": "SampleJob", "args": args, "queue": queue, "jid": job_id[-24:], "retry": True,
           "created_at": now, "enqueued_at": now}
    r.sadd("queues", queue)
    r.lpush(f"queue:{queue}", json.dumps(job))


def test_no_job_lost_across_two_deploys(deployed: None) -> None:
    for kind in ("sidekiq", "rq"):
        client("reset", kind)
    enqueuers = [
        subprocess.Popen(["/usr/bin/python3", str(CLIENT), "--redis", REDIS_URL, "enqueue", kind,
                          "--rate", "60", "--duration", "0"], stdout=subprocess.PIPE, text=True)
        for kind in ("sidekiq", "rq")
    ]
    started = time.monotonic()
    try:
        for _ in range(2):
            d = fab("deploy", "--host", ",".join(APP_HOSTS))
            assert d.returncode == 0, d.stderr
        # Keep enqueueing until at least 2000 jobs were sent in all (60/s for each of two kinds).
        remaining = 2000 / 120 - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining + 0.5)
    finally:
        for p in enqueuers:
            p.terminate()
    sent = [json.loads(p.communicate(timeout=30)[0]) for p in enqueuers]
    assert sum(s["enqueued"] for s in sent) >= 2000, sent
    counts = [client("count", kind, "--wait", "180") for kind in ("sidekiq", "rq")]
    for c in counts:
        print(f"no-job-lost: {c['kind']}: enqueued {c['enqueued']}, done {c['done']}, lost {c['missing']}, "
              f"duplicates {c['duplicates']}")
        assert c["missing"] == 0, c


def test_rq_job_taken_by_a_stopping_worker_is_requeued(deployed: None, r: redis.Redis) -> None:
    # RQ 1.x drops a job when SIGTERM lands just as its blocking pop returns, and a worker killed
    # mid-job leaves its job "started" for ever. Recreate both states exactly, with the workers stopped.
    assert fab("workers.stop", "--group", "rq").returncode == 0
    try:
        client("reset", "rq")
        client("enqueue", "rq", "--count", "3", "--queue", "high")
        popped = r.lpop("rq:queue:high")
        assert popped is not None and r.hget(b"rq:job:" + popped, "status") == b"queued"
        died = r.lpop("rq:queue:high")
        assert died is not None
        r.hset(b"rq:job:" + died, mapping={"status": "started", "worker_name": "gone-worker"})
        r.zadd("rq:wip:high", {died: time.time() + 600})
    finally:
        restart = fab("workers.restart", "--group", "rq")
    assert restart.returncode == 0, restart.stderr
    c = client("count", "rq", "--wait", "60")
    assert c["missing"] == 0 and c["done"] == 3 and c["duplicates"] == 0, c


def test_crashed_worker_is_restarted_by_systemd(deployed: None) -> None:
    unit = "sample-sidekiq@1.service"
    before = unit_states("prod-b")[unit]
    ssh("prod-b", f"kill -9 {before['main_pid']}")  # the worker runs as the deploy user
    wait_for(lambda: (u := unit_states("prod-b")[unit])["active"] == "active"
             and u["main_pid"] not in (0, before["main_pid"]), 60, "systemd to restart the worker")
    assert unit_states("prod-b")[unit]["restarts"] == before["restarts"] + 1
    assert fab("workers.status", "--host", "prod-b").returncode == 0


def test_shrinking_a_group_leaves_exactly_that_many(deployed: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, lambda d: d["hosts"]["prod-a"]["apps"]["sample"]["workers"]["sidekiq"].update(
        processes=1))
    try:
        r = fab("workers.install", "--inventory", inv, "--host", "prod-a")
        assert r.returncode == 0, r.stderr
        running = ssh("prod-a", "systemctl list-units --plain --no-legend 'sample-sidekiq@*' | awk '{print $1}'")
        assert running.stdout.split() == ["sample-sidekiq@1.service"]
        wants = ssh("prod-a", "ls /etc/systemd/system/sample-workers.target.wants").stdout.split()
        assert sorted(w for w in wants if w.startswith("sample-sidekiq@")) == ["sample-sidekiq@1.service"]
        assert fab("workers.status", "--inventory", inv, "--host", "prod-a").returncode == 0
    finally:
        assert fab("workers.install", "--host", "prod-a").returncode == 0
        assert fab("workers.start", "--host", "prod-a").returncode == 0


def test_workers_start_at_boot_without_deploytool(deployed: None, fleet: Any) -> None:
    # prod-b stopped: its status fails (the CI health gate), and only prod-a can work the jobs below.
    assert fab("workers.stop", "--host", "prod-b").returncode == 0
    try:
        assert fab("workers.status", "--host", "prod-b").returncode == 1
        fleet.reboot("prod-a")
        # No deploytool command from here on: systemd alone must bring the workers back: 3 Sidekiq, 2 RQ,
        # and one each of Celery on Redis, Celery on RabbitMQ, Dramatiq and the RabbitMQ consumer.
        wait_for(lambda: ssh("prod-a", "systemctl is-active 'sample-*@*.service'", check=False).returncode == 0
                 and ssh("prod-a", "systemctl list-units --plain --no-legend --state=active 'sample-*@*' "
                                   "| wc -l").stdout.strip() == "9", 120, "prod-a's workers after reboot")
        # Every kind works jobs again, all of them on prod-a.
        kinds = ("sidekiq", "rq", "celery-redis", "celery-rabbit", "dramatiq", "consumer")
        for kind in kinds:
            client("reset", kind)
            client("enqueue", kind, "--count", "50")
        for kind in kinds:
            c = client("count", kind, "--wait", "90")
            assert c["missing"] == 0, c
    finally:
        assert fab("workers.start", "--host", "prod-b").returncode == 0
    assert fab("workers.status").returncode == 0


def test_user_units_start_at_boot_through_linger(deployed: None, tmp_path: Path) -> None:
    def user_app(d: dict[str, Any]) -> None:
        sample = d["apps"]["sample"]
        d["apps"]["mine"] = {
            "roles": ["app"], "source": sample["source"], "deploy_to": "/srv/mine", "systemd": "user",
            "workers": {"ticker": {"kind": "command", "processes": 2,
                                   "command": ["/usr/bin/python3", "-c", "import time; time.sleep(1e6)"]}},
        }

    inv = variant(tmp_path, user_app)
    try:
        code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-a", "--app", "mine")
        assert code == 0, report
        assert ssh("prod-a", "loginctl show-user deploy --property=Linger").stdout.strip() == "Linger=yes"
        wants = ssh("prod-a", "ls ~/.config/systemd/user/default.target.wants "
                              "~/.config/systemd/user/mine-workers.target.wants").stdout.split()
        assert "mine-workers.target" in wants and "mine-ticker@2.service" in wants
        code, status = fab_json("workers.status", "--inventory", inv, "--host", "prod-a", "--app", "mine")
        assert code == 0 and len(status["units"]) == 3, status
        assert ssh("prod-a", "systemctl --user is-active mine-ticker@1.service").stdout.strip() == "active"
    finally:
        assert fab("workers.uninstall", "--inventory", inv, "--host", "prod-a", "--app", "mine").returncode == 0
    assert ssh("prod-a", "ls ~/.config/systemd/user/ | grep -c mine-", check=False).stdout.strip() == "0"


def test_disable_and_enable_switch_start_at_boot_only(deployed: None) -> None:
    units = "sample-workers.target sample-sidekiq@1.service sample-rq@2.service"
    try:
        assert fab("workers.disable", "--host", "prod-b").returncode == 0
        states = ssh("prod-b", f"systemctl is-enabled {units}", check=False).stdout.split()
        assert states == ["disabled"] * 3
        assert fab("workers.status", "--host", "prod-b").returncode == 0  # still running
    finally:
        assert fab("workers.enable", "--host", "prod-b").returncode == 0
    assert ssh("prod-b", f"systemctl is-enabled {units}").stdout.split() == ["enabled"] * 3
