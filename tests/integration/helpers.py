"""What the deploy and worker tests share: running `fab` as a user would, SSH to a sandbox host,
inventory variants, the sample app's shared files and its job client."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from deploytool.inventory import load_inventory
from deploytool.sandbox import ssh_argv

ROOT = Path(__file__).resolve().parents[2]
FAB = ROOT / ".venv" / "bin" / "fab"
SANDBOX = ROOT / "inventories" / "sandbox.yml"
CLIENT = ROOT / "examples" / "sample-app" / "client.py"
REDIS_URL = "redis://10.213.0.21:6379/0"
RABBIT_HOST = "rabbit-a"
APP_HOSTS = ("prod-a", "prod-b")
# The sample app's venv (scripts/bootstrap): Dramatiq from PyPI, and Debian's rq, redis, celery, pika.
SAMPLE_PYTHON = "/opt/deploytool-sample/venv/bin/python"
DEPLOY_TO = "/srv/sample"


def fab(*args: str, timeout: float = 600, stdin: str = "") -> subprocess.CompletedProcess[str]:
    # stdin: what the command reads (nothing by default: never the test runner's terminal).
    return subprocess.run(
        [str(FAB), "-r", str(ROOT), *args], capture_output=True, text=True, timeout=timeout, check=False,
        input=stdin,
    )


def fab_json(*args: str) -> tuple[int, dict[str, Any]]:
    r = fab(*args, "--json")
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from fab {args}: {r.stdout!r} {r.stderr!r}") from None


def ssh(host: str, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    address = load_inventory(SANDBOX).hosts[host].address
    r = subprocess.run(ssh_argv(address, command), capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{host}: {command}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def variant(tmp_path: Path, mutate: Callable[[dict[str, Any]], None], name: str = "variant.yml") -> str:
    """A copy of the sandbox inventory, changed by `mutate`, written where a test can use it."""
    data = yaml.safe_load(SANDBOX.read_text())
    for app in data["apps"].values():
        repo = Path(app["source"]["repository"])
        if not repo.is_absolute():
            app["source"]["repository"] = str((SANDBOX.parent / repo).resolve())
    mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def client_argv(*args: str) -> list[str]:
    return [SAMPLE_PYTHON, str(CLIENT), "--redis", REDIS_URL, *args]


def client_env() -> dict[str, str]:
    """The client's environment: RabbitMQ's URL holds a password, so it never goes in an argv."""
    from deploytool.sandbox.services import amqp_url

    return {"PATH": "/usr/bin:/bin", "RABBITMQ_URL": amqp_url(RABBIT_HOST)}


def client(*args: str, timeout: float = 300) -> dict[str, Any]:
    # The same rq, celery and pika the hosts run (Debian's), seen through the sample venv.
    r = subprocess.run(client_argv(*args), env=client_env(), capture_output=True, text=True, timeout=timeout,
                       check=False)
    assert r.stdout, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def readlink_current(host: str) -> str:
    return ssh(host, f"readlink {DEPLOY_TO}/current").stdout.strip()


SAMPLE_APP = ROOT / "examples" / "sample-app"


def new_revision(tmp_path: Path, change: Callable[[Path], None]) -> str:
    """A new revision of the sample app in a repository of its own: its files, changed by `change`."""
    repo = tmp_path / "sample-app"
    shutil.copytree(SAMPLE_APP, repo, ignore=shutil.ignore_patterns("__pycache__"))
    change(repo)
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "a new revision")):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                       check=True, capture_output=True)
    return str(repo)


def revision_inventory(tmp_path: Path, repo: str) -> str:
    """The sandbox inventory with the sample app's code taken from `repo`."""
    def point(data: dict[str, Any]) -> None:
        data["apps"]["sample"]["source"]["repository"] = repo

    return variant(tmp_path, point)


def worker_units(host: str) -> dict[str, tuple[str, int, str]]:
    """Each worker unit of the sample app: its active state, main PID and the release its main process
    works in (/proc/PID/cwd)."""
    script = ("for u in $(systemctl list-units --all --plain --no-legend 'sample-*@*.service' | awk '{print $1}'); "
              "do pid=$(systemctl show -p MainPID --value $u); "
              'echo "$u $(systemctl is-active $u) $pid $(readlink /proc/$pid/cwd 2>/dev/null || echo -)"; done')
    rows = {}
    for line in ssh(host, script).stdout.splitlines():
        unit, state, pid, cwd = line.split()
        rows[unit] = (state, int(pid), cwd)
    return rows


def back_on(host: str, release: str, expected_units: int) -> None:
    """The host runs `release`: current points to it, every worker unit is active and stays so (the
    same process for longer than systemd's RestartSec), each main process works in it."""
    assert readlink_current(host) == release

    def settled() -> bool:
        rows = worker_units(host)
        return len(rows) == expected_units and all(state == "active" and cwd == release
                                                   for state, _, cwd in rows.values())

    try:
        wait_for(settled, 60, f"every worker of {host} active in {release}", interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}: {expected_units} units expected, found {worker_units(host)}") from None
    before = worker_units(host)
    time.sleep(7)  # longer than RestartSec=5: a crash loop would show
    assert worker_units(host) == before
