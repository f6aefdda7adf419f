"""Fabric's core options as `fab` really parses them: `-H` selects hosts exactly like `--host`, core
options deploytool would ignore are refused with exit 2 before anything connects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAB = REPO / ".venv" / "bin" / "fab"

# Two hosts on loopback ports nothing listens on: a connection attempt fails within its bound and is
# reported per host, so the report shows exactly which hosts a task tried to reach.
INVENTORY = """\
hosts:
  one: {address: 127.0.0.1, port: 1, roles: [app], connect_timeout: 0.5}
  two: {address: 127.0.0.1, port: 2, roles: [app], connect_timeout: 0.5}
apps:
  web:
    source: {repository: /nonexistent}
    deploy_to: /srv/web
    workers:
      w: {kind: command, command: [/bin/true]}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "two.yml").write_text(INVENTORY)
    shutil.copy(REPO / "fabfile.py", tmp_path / "fabfile.py")
    (tmp_path / "fabric.yaml").write_text((REPO / "deploytool" / "scaffold" / "fabric.yaml").read_text()
                                          .replace("inventory: production", "inventory: two"))
    return tmp_path


def fab(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "FABRIC_"))}
    return subprocess.run([str(FAB), "-r", str(project), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def hosts_in_report(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [h["host"] for h in json.loads(r.stdout)["hosts"]]


@pytest.mark.parametrize("flag", ["-H", "--hosts"])
def test_hosts_flag_selects_like_host(project: Path, flag: str) -> None:
    r = fab(project, flag, "two", "workers.status", "--json")
    assert r.returncode == 1, r.stderr  # the one host selected cannot be reached
    assert hosts_in_report(r) == ["two"]
    assert hosts_in_report(fab(project, "workers.status", "--host", "two", "--json")) == ["two"]
    assert sorted(hosts_in_report(fab(project, "workers.status", "--json"))) == ["one", "two"]


def test_hosts_flag_selects_a_list_and_fab_run_takes_it(project: Path) -> None:
    assert hosts_in_report(fab(project, "-H", "two,one", "workers.status", "--json")) == ["two", "one"]
    r = fab(project, "-H", "two", "run", "--dry-run", "--", "hostname")
    assert r.returncode == 0, r.stderr
    assert "\ntwo: web" in r.stdout and "one:" not in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["-H", "nope", "deploy"], "--host nope: no such host (known: one, two)"),
    (["-H", "one", "deploy", "--host", "two"], "-H/--hosts one and deploy --host two: name the hosts once"),
    (["-H", "one", "inventory.check"], "-H/--hosts one: task inventory.check takes no host selection"),
    (["-S", "/dev/null", "deploy"], "-S/--ssh-config:"),
    (["-R", "deploy"], "-R/--dry: Fabric's echo mode"),
    (["--dry", "workers.restart"], "-R/--dry: Fabric's echo mode"),
    (["-i", "/tmp/key", "workers.status"], "-i/--identity:"),
    (["-t", "3", "workers.status"], "-t/--connect-timeout:"),
    (["-T", "3", "workers.status"], "-T/--command-timeout:"),
])
def test_refused_before_anything_connects(project: Path, args: list[str], message: str) -> None:
    began = time.monotonic()
    r = fab(project, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    # No connection tried: refusing takes no connect bound (each host's is 0.5 s, retried until then).
    assert time.monotonic() - began < 30


def test_same_list_given_both_ways_is_one_selection(project: Path) -> None:
    r = fab(project, "-H", "one", "workers.status", "--host", "one", "--json")
    assert hosts_in_report(r) == ["one"]


def test_project_without_deploytools_executor_refuses_hosts_flag(project: Path) -> None:
    """Fabric's own executor hands each task a connection per -H host: the task refuses it (exit 2)."""
    (project / "fabric.yaml").write_text("deploytool:\n  inventory: two\n")
    r = fab(project, "-H", "two", "workers.status", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "-H/--hosts two: Fabric's host flag does not reach this task here" in r.stderr
    assert r.stdout == ""
