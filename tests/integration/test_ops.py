"""Operator tasks against the sandbox fleet: `fab config.upload`, deploy hooks, `fab check`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from helpers import APP_HOSTS, DEPLOY_TO, fab, fab_json, ssh, variant

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
        for expected in ("changed", "unchanged"):
            r = fab("config.upload", "--inventory", inv, "--host", hosts, "--file", EXTRA, "--from", str(source))
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
