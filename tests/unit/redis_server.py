"""A real redis-server on a socket for the programs deploytool sends to hosts (the RQ requeue, the jobs
probes), run here by Debian's python3 with its rq and redis, as a host runs them."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PYTHON = "/usr/bin/python3"


def usable() -> bool:
    if shutil.which("redis-server") is None:
        return False
    return subprocess.run([PYTHON, "-c", "import redis, rq"], capture_output=True, check=False).returncode == 0


@pytest.fixture
def socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "redis.sock")
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", path, "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(path).exists():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield path
    finally:
        server.terminate()
        server.wait(10)


def py(code: str, *args: str) -> str:
    r = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


