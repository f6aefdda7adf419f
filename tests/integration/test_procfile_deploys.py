"""An app whose worker groups come from its Procfile, deployed to prod-a and judged there: the units'
ExecStart, the running processes' argv and environment, RQ workers doing a job, and the command of the
revision deployed (not the work tree's HEAD).

The app is a small git repository built by the test, with its own deploy_to and its own Redis DB, so it
leaves the sample app's tests alone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import SAMPLE_PYTHON, SANDBOX, fab, ssh, wait_for

from deploytool.sandbox import Fleet

pytestmark = pytest.mark.integration

APP = "procapp"
HOST = "prod-a"
DEPLOY_TO = f"/srv/{APP}"
REDIS = "redis://10.213.0.21:6379/9"  # a DB of its own: the redis check sees no other app there
WORK = """#!/bin/sh
# Says what it was started with, then stays (not exec: the unit's main process keeps this argv).
echo "work: $* TICK=$TICK"
while :; do sleep 1; done
"""
TASKS = '''import os

from redis import Redis


def mark(value):
    Redis.from_url(os.environ["REDIS_URL"]).set("procapp:done", value)
'''
PROCFILE = """\
# procapp's processes (foreman and honcho read this file too)
clock: TICK='a b' bin/work clock --label "{label}" --port $PORT
jobs: rq worker procapp-high procapp-default
release: bin/migrate
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def write(root: Path, label: str) -> None:
    (root / "Procfile").write_text(PROCFILE.format(label=label))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"clock labelled {label}")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / APP
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "work").write_text(WORK)
    (root / "bin" / "work").chmod(0o755)
    (root / "tasks.py").write_text(TASKS)
    git(root, "init", "-q", "-b", "main")
    write(root, "two words")
    git(root, "tag", "v1")
    return root


@pytest.fixture
def inventory(app: Path, tmp_path: Path) -> Iterator[str]:
    host = yaml.safe_load(SANDBOX.read_text())["hosts"][HOST]
    data = {
        "hosts": {HOST: {k: host[k] for k in ("address", "user", "known_hosts", "identity")} | {"roles": ["worker"]}},
        "apps": {APP: {
            "roles": ["worker"], "source": {"repository": str(app), "revision": "main"}, "deploy_to": DEPLOY_TO,
            "keep_releases": 2, "redis": REDIS,
            "workers": {"clock": {"procfile": "clock", "timeout": 5},
                        "jobs": {"procfile": "jobs", "kind": "rq", "processes": 2, "timeout": 10}},
        }},
    }
    path = tmp_path / "procapp.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield str(path)
    finally:
        fab("workers.uninstall", "--inventory", str(path), "--host", HOST, timeout=300)
        ssh(HOST, f"rm -rf {DEPLOY_TO}", check=False)
        redis("flushdb")


def redis(*command: str) -> str:
    code = ("import sys; from redis import Redis; "
            f"r = Redis.from_url({REDIS!r}).execute_command(*sys.argv[1:]); "
            "print(r.decode() if isinstance(r, bytes) else r)")
    return subprocess.run([SAMPLE_PYTHON, "-c", code, *command], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def exec_start(unit: str) -> str:
    shown = ssh(HOST, f"systemctl show -p ExecStart --value {unit}").stdout
    return shown.split("argv[]=")[1].split(" ;")[0]


def argv_of(unit: str) -> list[str]:
    pid = ssh(HOST, f"systemctl show -p MainPID --value {unit}").stdout.strip()
    assert pid not in ("", "0"), f"{unit} has no main process"
    return ssh(HOST, f"cat /proc/{pid}/cmdline").stdout.split("\0")[:-1]


def environ_of(unit: str) -> dict[str, str]:
    pid = ssh(HOST, f"systemctl show -p MainPID --value {unit}").stdout.strip()
    pairs = ssh(HOST, f"cat /proc/{pid}/environ").stdout.split("\0")[:-1]
    return dict(p.partition("=")[::2] for p in pairs)


def deploy(inventory: str, *args: str) -> None:
    r = fab("deploy", "--inventory", inventory, "--host", HOST, *args)
    assert r.returncode == 0, r.stdout + r.stderr


def test_groups_from_the_procfile_run_its_commands_at_the_deployed_revision(
    fleet: Fleet, app: Path, inventory: str
) -> None:
    deploy(inventory)
    clock, jobs = f"{APP}-clock@1.service", [f"{APP}-jobs@{i}.service" for i in (1, 2)]
    ssh(HOST, f"systemctl is-active {clock} {' '.join(jobs)}")
    # The Procfile's line, split as a shell splits it: the assignment through env, $PORT as foreman
    # gives it (5000 + 100 * index 0), the quoted label one argument.
    # (env runs bin/work from the unit's WorkingDirectory, the release.)
    assert exec_start(clock) == "/usr/bin/env TICK=a b bin/work clock --label two words --port 5000"
    assert argv_of(clock) == ["/bin/sh", "bin/work", "clock", "--label", "two words", "--port", "5000"]
    assert environ_of(clock)["TICK"] == "a b"
    assert exec_start(jobs[0]) == "rq worker procapp-high procapp-default"
    assert argv_of(jobs[1])[-3:] == ["worker", "procapp-high", "procapp-default"]
    # `release` (a one-off) is no group: the app's units are the two groups' and the target.
    units = ssh(HOST, f"ls /etc/systemd/system | grep '^{APP}-' || true").stdout.split()
    assert units == [f"{APP}-clock@.service", f"{APP}-jobs@.service", f"{APP}-workers.target",
                     f"{APP}-workers.target.wants"]

    # The RQ workers work the Procfile's queues (which deploytool read from the command for its checks).
    enqueue = ("from redis import Redis; from rq import Queue; "
               f"Queue('procapp-high', connection=Redis.from_url({REDIS!r})).enqueue('tasks.mark', 'done')")
    subprocess.run([SAMPLE_PYTHON, "-c", enqueue], check=True, capture_output=True, timeout=30)
    wait_for(lambda: redis("get", "procapp:done") == "done", 60, "an RQ worker to run the job")
    r = fab("workers.status", "--inventory", inventory, "--host", HOST)
    assert r.returncode == 0, r.stdout + r.stderr

    # The work tree moves on; a deploy of v1 still runs v1's line, a deploy of main the new one.
    write(app, "three words now")
    deploy(inventory, "--revision", "v1")
    assert argv_of(clock)[4] == "two words"
    deploy(inventory)
    assert exec_start(clock).endswith("--label three words now --port 5000")
    assert argv_of(clock)[4] == "three words now"
    ssh(HOST, f"systemctl is-active {clock} {' '.join(jobs)}")
    # A rollback returns to the v1 release with the units of v1's Procfile.
    r = fab("rollback", "--inventory", inventory, "--host", HOST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert exec_start(clock).endswith("--label two words --port 5000")
    assert argv_of(clock)[4] == "two words"
    ssh(HOST, f"systemctl is-active {clock} {' '.join(jobs)}")


def test_a_missing_process_type_touches_nothing(fleet: Fleet, app: Path, inventory: str) -> None:
    data = yaml.safe_load(Path(inventory).read_text())
    data["apps"][APP]["workers"]["clock"]["procfile"] = "ticker"
    Path(inventory).write_text(yaml.safe_dump(data, sort_keys=False))
    r = fab("deploy", "--inventory", inventory, "--host", HOST)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.splitlines() == [f"error: {inventory}: apps.{APP}.workers.clock.procfile: Procfile at main "
                                     f"({git(app, 'rev-parse', 'HEAD')[:12]}): no process type 'ticker' "
                                     "(it has: clock, jobs, release)"]
    assert ssh(HOST, f"test -e {DEPLOY_TO}", check=False).returncode == 1


def test_a_failed_deploy_puts_back_the_command_of_the_release_it_returns_to(
    fleet: Fleet, app: Path, inventory: str
) -> None:
    deploy(inventory)
    clock = f"{APP}-clock@1.service"
    before = ssh(HOST, f"readlink {DEPLOY_TO}/current").stdout.strip()
    # The new line names a program the release does not have: systemd cannot exec it, the start fails.
    clock_line = PROCFILE.format(label="two words").splitlines()[1]
    (app / "Procfile").write_text(PROCFILE.format(label="two words").replace(clock_line, "clock: bin/missing --x"))
    git(app, "commit", "-q", "-am", "a clock that cannot start")
    r = fab("deploy", "--inventory", inventory, "--host", HOST)
    assert r.returncode == 1, r.stdout + r.stderr
    assert ssh(HOST, f"readlink {DEPLOY_TO}/current").stdout.strip() == before
    assert exec_start(clock) == "/usr/bin/env TICK=a b bin/work clock --label two words --port 5000"
    assert argv_of(clock)[4] == "two words"
    ssh(HOST, f"systemctl is-active {clock} {APP}-jobs@1.service {APP}-jobs@2.service")
