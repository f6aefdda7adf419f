"""Operator tasks against the sandbox fleet: `fab config.upload`, deploy hooks, `fab check`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import APP_HOSTS, DEPLOY_TO, fab, fab_json, ssh, variant

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
