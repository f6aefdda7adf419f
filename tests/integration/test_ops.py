"""Operator tasks against the sandbox fleet: `fab config.upload`, deploy hooks, `fab check`."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import APP_HOSTS, DEPLOY_TO, FAB, ROOT, fab, fab_json, readlink_current, ssh, variant

from deploytool.sandbox.host import SUDOERS
from deploytool.sandbox.layout import DEPLOY_USER

pytestmark = pytest.mark.integration

SECRET = "OPS_TEST_TOKEN=never-printed-0123456789"
EXTRA = "config/ops.key"  # a linked file of an inventory variant only: the deployed app never reads it


def with_extra_linked_file(data: dict[str, Any]) -> None:
    data["apps"]["sample"]["linked_files"] = ["config/app.env", EXTRA]


def test_config_upload_changed_then_unchanged(sample_shared: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, with_extra_linked_file)
    source = tmp_path / "ops.key"
    source.write_text(SECRET + "\n")
    hosts = ",".join(APP_HOSTS)
    path = f"{DEPLOY_TO}/shared/{EXTRA}"
    try:
        for expected, origin in (("changed", str(source)), ("unchanged", "-")):
            # The second time from standard input, as a CI secret is piped in.
            r = subprocess.run([str(FAB), "-r", str(ROOT), "config.upload", "--inventory", inv, "--host", hosts,
                                "--file", EXTRA, "--from", origin], input=SECRET + "\n", capture_output=True,
                               text=True, timeout=300, check=False)
            assert r.returncode == 0, r.stdout + r.stderr
            assert SECRET not in r.stdout + r.stderr and "never-printed" not in r.stdout + r.stderr
            assert r.stdout.splitlines() == [f"{h}: sample: {path}: {expected}" for h in APP_HOSTS]
        for h in APP_HOSTS:
            assert ssh(h, f"stat -c '%a %U' {path}").stdout.split() == ["600", "deploy"]
            assert ssh(h, f"cat {path}").stdout == SECRET + "\n"
            # Only the file itself: no temporary file left beside it.
            assert ssh(h, f"ls -A {DEPLOY_TO}/shared/config").stdout.split() == ["app.env", "ops.key"]

        # A changed mode is put right too; the dry run only says so.
        ssh("prod-a", f"chmod 644 {path}")
        code, report = fab_json("config.upload", "--inventory", inv, "--host", "prod-a", "--file", EXTRA,
                                "--from", str(source), "--dry-run")
        assert code == 0 and report["hosts"][0]["result"] == "would change", report
        assert ssh("prod-a", f"stat -c %a {path}").stdout.strip() == "644"

        # Not a linked file: bad input, naming the linked files; nothing contacted.
        r = fab("config.upload", "--inventory", inv, "--file", "config/nope", "--from", str(source))
        assert r.returncode == 2 and "config/app.env, config/ops.key" in r.stderr, r.stderr
    finally:
        for h in APP_HOSTS:
            ssh(h, f"rm -f {path}")


def test_config_upload_to_workers_of_another_user(sample_shared: None, tmp_path: Path) -> None:
    """Workers running as another user than the SSH user: the file becomes theirs (sudo install), and is
    read back as them (their runtime context) to see it unchanged."""

    def as_nobody(data: dict[str, Any]) -> None:
        with_extra_linked_file(data)
        for group in data["apps"]["sample"]["workers"].values():
            group["user"] = "nobody"

    inv = variant(tmp_path, as_nobody)
    source = tmp_path / "ops.key"
    source.write_text(SECRET + "\n")
    path = f"{DEPLOY_TO}/shared/{EXTRA}"
    try:
        for expected in ("changed", "unchanged"):
            code, report = fab_json("config.upload", "--inventory", inv, "--host", "prod-a", "--file", EXTRA,
                                    "--from", str(source))
            assert code == 0 and report["hosts"][0]["result"] == expected, report
        assert ssh("prod-a", f"stat -c '%a %U' {path}").stdout.split() == ["600", "nobody"]
        assert ssh("prod-a", f"cat {path}", check=False).returncode != 0  # not readable by the SSH user
        assert ssh("prod-a", f"ls -A {DEPLOY_TO}/shared/config").stdout.split() == ["app.env", "ops.key"]
    finally:
        ssh("prod-a", f"rm -f {path}")


SUDOERS_FILE = "/etc/sudoers.d/deploytool-sandbox"


def write_sudoers(host: str, text: str) -> None:
    # Through the deploy user's own `sudo tee` right (kept in the narrowed file, so this restores too).
    ssh(host, f"printf %s {shlex.quote(text)} | sudo -n tee {SUDOERS_FILE} >/dev/null")


def tree(host: str) -> str:
    """Everything under deploy_to and the unit directory (names, sizes, times, modes, owners), except
    what running workers write (logs, tmp)."""
    return ssh(host, f"find {DEPLOY_TO} /etc/systemd/system \\( -path {DEPLOY_TO}/shared/log -o "
                     f"-path {DEPLOY_TO}/shared/tmp \\) -prune -o -printf '%p %s %T@ %m %u %l\\n' | sort").stdout


def test_check_lists_every_problem_and_changes_nothing(sample_shared: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, with_extra_linked_file)
    full = SUDOERS.format(user=DEPLOY_USER)
    narrow = full.replace("/usr/bin/journalctl, ", "")
    assert narrow != full
    before = tree("prod-a")
    try:
        write_sudoers("prod-a", narrow)
        r = fab("check", "--inventory", inv, "--host", "prod-a")
        code, report = fab_json("check", "--inventory", inv, "--host", "prod-a")
    finally:
        write_sudoers("prod-a", full)
    assert r.returncode == 1 and code == 1, r.stdout + r.stderr
    upload = f"fab config.upload --app sample --file {EXTRA} --from PATH"
    problems = [(f["check"], f["detail"]) for f in report["hosts"][0]["findings"] if not f["ok"] and not f["note"]]
    assert problems == [
        ("sudo", "sudo -n journalctl: not allowed for deploy without a password (deploytool runs it)"),
        ("linked file", f"{DEPLOY_TO}/shared/{EXTRA}: missing; upload it: {upload}"),
    ], report
    assert r.stdout.count("PROBLEM") == 2 and upload in r.stdout, r.stdout
    assert tree("prod-a") == before

    # A good host: exit 0, with the worker groups' programs resolved as the units start them.
    code, report = fab_json("check", "--host", "prod-b")
    assert code == 0, report
    found = {(f["check"], f["detail"].split(":")[0]): f for f in report["hosts"][0]["findings"]}
    assert found[("worker program", "sidekiq")]["detail"].endswith("-> /usr/bin/sidekiq")
    assert found[("worker program", "rq")]["detail"].endswith("-> /usr/bin/rq")
    assert {f["check"] for f in report["hosts"][0]["findings"]} >= {
        "host key", "sudo", "program", "deploy_to", "linked file", "disk", "units", "worker program"}


def test_check_reports_an_unknown_host_key(sample_shared: None, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    def unknown_key(data: dict[str, Any]) -> None:
        data["hosts"]["prod-b"]["known_hosts"] = str(empty)

    code, report = fab_json("check", "--inventory", variant(tmp_path, unknown_key), "--host", "prod-a,prod-b")
    assert code == 1
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host["prod-a"]["status"] == "ok", by_host["prod-a"]
    [finding] = by_host["prod-b"]["findings"]
    assert finding["check"] == "host key" and f"is not in {empty}" in finding["detail"], finding


ONCE_LOG = f"{DEPLOY_TO}/shared/hooks-once.log"
AFTER_LOG = f"{DEPLOY_TO}/shared/hooks-after.log"


def hooks(**points: list[Any]) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["apps"]["sample"]["hooks"] = points

    return mutate


def workers_pids(host: str) -> str:
    """Each worker unit with its main PID and state: unchanged means the workers were left alone."""
    return ssh(host, "for u in $(systemctl list-units --plain --no-legend 'sample-*@*.service' | awk '{print $1}'); "
                     "do echo $u $(systemctl show -p MainPID --value $u) $(systemctl is-active $u); done").stdout


def test_once_hook_runs_on_exactly_one_host(deployed: None, tmp_path: Path) -> None:
    once = {"command": f"echo $(hostname) $APP_ENV $SAMPLE_JOB_SECONDS >> {ONCE_LOG}", "once": True}
    inv = variant(tmp_path, hooks(before_switch=[once], after_restart=[f"hostname >> {AFTER_LOG}"]))
    try:
        # prod-b named first: the once host is still the first in inventory order.
        r = fab("deploy", "--inventory", inv, "--host", "prod-b,prod-a", "--dry-run", "--verbose")
        assert r.returncode == 0 and r.stdout.count("[before_switch (once)]") == 1, r.stdout
        assert "prod-a: sample: release" in r.stdout and "runs the app's once hooks" in r.stdout
        r = fab("deploy", "--inventory", inv, "--host", "prod-b,prod-a")
        assert r.returncode == 0, r.stderr
        logs = {h: ssh(h, f"cat {ONCE_LOG} 2>/dev/null || true").stdout.split() for h in APP_HOSTS}
        # Once, on the first host, with the inventory's environment and the env file's.
        assert logs == {"prod-a": ["prod-a", "production", "0.05"], "prod-b": []}
        assert {h: ssh(h, f"cat {AFTER_LOG}").stdout.split() for h in APP_HOSTS} == {h: [h] for h in APP_HOSTS}
    finally:
        for h in APP_HOSTS:
            ssh(h, f"rm -f {ONCE_LOG} {AFTER_LOG}")


def test_failing_hook_before_switch_leaves_current_and_workers(deployed: None, tmp_path: Path) -> None:
    current, pids = readlink_current("prod-a"), workers_pids("prod-a")
    assert " active" in pids
    inv = variant(tmp_path, hooks(after_build=["true"], before_switch=["echo no migration >&2; exit 3"]))
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-a")
    assert code == 1
    [host] = report["hosts"]
    assert host["status"] == "failed" and "before_switch: exit 3" in host["error"], host
    assert "no migration" in host["error"]
    assert [s["name"] for s in host["stages"] if s["status"] == "failed"] == ["before_switch"]
    assert readlink_current("prod-a") == current
    assert workers_pids("prod-a") == pids
    assert ssh("prod-a", f"ls {DEPLOY_TO}/releases").stdout.split()[-1] == current.rsplit("/", 1)[1]


def test_failing_hook_after_restart_is_reported_and_the_release_stays(deployed: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, hooks(after_restart=["exit 4"]))
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-a")
    assert code == 1
    [host] = report["hosts"]
    assert host["status"] == "failed" and "after_restart: exit 4" in host["error"], host
    assert f"release {host['release']} is live; its workers keep running" in host["error"]
    assert readlink_current("prod-a") == f"{DEPLOY_TO}/releases/{host['release']}"
    assert [s["name"] for s in host["stages"]][-3:] == ["cleanup", "after_restart", "unlock"]
    assert fab("workers.status", "--host", "prod-a").returncode == 0
    assert f"deployed as release {host['release']}" in ssh("prod-a", f"tail -n1 {DEPLOY_TO}/revisions.log").stdout
