"""Readiness on the sandbox: a release whose workers cannot work fails the deploy on the host that restarts
into it, and the host is put back: `current` on the release it had, every unit active, every worker
process working in that release (judged on the hosts: readlink, systemctl, /proc/PID/cwd)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    APP_HOSTS,
    DEPLOY_TO,
    back_on,
    fab,
    fab_json,
    new_revision,
    readlink_current,
    revision_inventory,
    ssh,
    worker_units,
)

pytestmark = pytest.mark.integration

def deploy_fails_and_every_host_is_back(tmp_path: Path, change: Callable[[Path], None], group: str) -> str:
    before = {h: readlink_current(h) for h in APP_HOSTS}
    counts = {h: len(worker_units(h)) for h in APP_HOSTS}
    inv = revision_inventory(tmp_path, new_revision(tmp_path, change))
    code, report = fab_json("deploy", "--inventory", inv, "--host", ",".join(APP_HOSTS))
    assert code == 1, report
    failed = [h for h in report["hosts"] if h["status"] == "failed"]
    assert failed, report
    for h in APP_HOSTS:
        back_on(h, before[h], counts[h])
    errors = " ".join(h["error"] for h in failed)
    print(f"deploy failed as it should: {errors}")
    assert f"sample/{group}: not ready" in errors, errors
    return errors


def test_a_dramatiq_app_raising_at_import_fails_readiness_and_the_hosts_go_back(deployed: None,
                                                                                 tmp_path: Path) -> None:
    def broken(repo: Path) -> None:
        with (repo / "dramatiq_app.py").open("a") as f:
            f.write('\nraise RuntimeError("this release cannot import its Dramatiq app")\n')

    deploy_fails_and_every_host_is_back(tmp_path, broken, "dramatiq")


def test_a_celery_app_raising_at_import_fails_readiness_not_the_quiet(deployed: None, tmp_path: Path) -> None:
    def broken(repo: Path) -> None:
        with (repo / "celery_redis.py").open("a") as f:
            f.write('\nraise RuntimeError("this release cannot import its Celery app")\n')

    errors = deploy_fails_and_every_host_is_back(tmp_path, broken, "celery-redis")
    # The quiet ran in the release the nodes run (the old one), so it was not what failed.
    assert "cancel_consumer" not in errors, errors


def test_dramatiq_pointed_at_a_wrong_broker_fails_readiness(deployed: None, tmp_path: Path) -> None:
    def wrong_broker(repo: Path) -> None:
        app = repo / "dramatiq_app.py"
        # Nothing listens on that port of the RabbitMQ host.
        url = 'os.environ["RABBITMQ_URL"]'
        app.write_text(app.read_text().replace(f"RabbitmqBroker(url={url})",
                                               f'RabbitmqBroker(url={url}.replace(":5672", ":5699"))'))
        assert ":5699" in app.read_text()

    deploy_fails_and_every_host_is_back(tmp_path, wrong_broker, "dramatiq")


def test_workers_restart_into_a_broken_release_fails_readiness(deployed: None) -> None:
    """`current` switched by hand to a copy of the release whose Dramatiq app cannot import: the unit
    starts (Type=exec) and would count as restarted; readiness sees it exit."""
    good = readlink_current("prod-b")
    broken = good + "-broken"
    ssh("prod-b", f"cp -a {good} {broken} && echo 'raise RuntimeError(\"broken\")' >> {broken}/dramatiq_app.py "
                  f"&& ln -sfn {broken} {DEPLOY_TO}/current")
    try:
        r = fab("workers.restart", "--host", "prod-b", "--group", "dramatiq")
        assert r.returncode == 1, r.stderr
        assert "sample/dramatiq: not ready" in r.stderr, r.stderr
    finally:
        ssh("prod-b", f"ln -sfn {good} {DEPLOY_TO}/current && rm -rf {broken}")
        again = fab("workers.restart", "--host", "prod-b", "--group", "dramatiq")
    assert again.returncode == 0, again.stderr
    rows = worker_units("prod-b")
    assert rows["sample-dramatiq@1.service"][0] == "active" and rows["sample-dramatiq@1.service"][2] == good
