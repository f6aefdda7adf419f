"""What the deploy and worker tests share: running `fab` as a user would, SSH to a sandbox host,
inventory variants, the sample app's shared files and its job client."""

from __future__ import annotations

import json
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


def fab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAB), "-r", str(ROOT), *args], capture_output=True, text=True, timeout=timeout, check=False
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
