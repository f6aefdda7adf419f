"""`fab check`: what it probes is derived from the builders; the probes, run for real by a local shell
against a temporary deploy_to, are parsed into findings that say what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploytool.commands import check as probes
from deploytool.inventory import Inventory, load_inventory
from deploytool.operations import check


def sh(text: str) -> str:
    r = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def inventory(tmp_path: Path, strategy: str = "archive", **app: str) -> Inventory:
    settings = "".join(f"    {k}: {v}\n" for k, v in app.items())
    path = tmp_path / "inv.yml"
    path.write_text(f"""
hosts:
  h1: {{address: 10.0.0.1, user: deploy, roles: [app]}}
apps:
  shop:
    source: {{repository: /srv/git/shop, strategy: {strategy}}}
    deploy_to: {tmp_path / "shop"}
    linked_files: [config/app.env, config/master.key]
{settings}    workers:
      w: {{kind: command, command: [worker-program-that-does-not-exist]}}
      s: {{kind: command, command: [sh]}}
""")
    return load_inventory(path)


def texts(inv: Inventory) -> list[str]:
    return check.host_commands(inv, "h1", inv.apps_on("h1")["shop"])


def test_sudo_programs_are_those_the_builders_run_with_sudo(tmp_path: Path) -> None:
    assert check.sudo_programs(texts(inventory(tmp_path))) == [
        "journalctl", "mkdir", "rm", "systemctl", "systemd-run", "tee"]
    # An environment adds root-only environment files: written with install, compared with cmp.
    with_env = check.sudo_programs(texts(inventory(tmp_path, environment="{GREETING: hello}")))
    assert {"install", "cmp"} <= set(with_env)
    # User-mode units: systemctl --user and systemd-run --user need no sudo; lingering needs loginctl.
    assert check.sudo_programs(texts(inventory(tmp_path, systemd="user"))) == ["loginctl"]


def test_remote_programs_follow_the_strategy(tmp_path: Path) -> None:
    archive = check.remote_programs(texts(inventory(tmp_path)))
    assert {"tar", "gzip", "base64", "mktemp", "sha256sum", "systemctl"} <= set(archive)
    assert "git" not in archive and "target" not in archive
    assert {"python3", "systemd-run"} <= set(archive)  # the plan runner (it holds the lock), the runtime context
    git = check.remote_programs(texts(inventory(tmp_path, strategy="git")))
    assert "git" in git and "gzip" not in git


def test_needed_disk_is_the_upload_plus_a_release() -> None:
    assert check.needed_kb(10 * 1024, 0) == 20
    assert check.needed_kb(10 * 1024, 500) == 510
    assert check.needed_kb(None, 500) == 500


def test_probes_run_for_real_and_name_each_problem(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    app = inv.apps_on("h1")["shop"]
    shared = Path(app.shared_path)
    (shared / "config").mkdir(parents=True)
    (shared / "config/app.env").write_text("X=1\n")
    script = probes.probe(app, [], ["sh", "no-such-program-xyz"])
    rows = probes.parse(sh(script))
    found = check.findings(rows, app, 4096, "deploy")
    problems = {(f.check, f.detail) for f in check.problems(found)}
    upload = "fab config.upload --app shop --file config/master.key --from PATH"
    assert problems == {
        ("program", "no-such-program-xyz: not found on the host"),
        ("linked file", f"{shared}/config/master.key: missing; upload it: {upload}"),
    }
    assert ("deploy_to", f"{app.deploy_to}: writable") in {(f.check, f.detail) for f in found}
    assert ("current", "release", False, []) in rows  # nothing deployed yet


def test_a_deploy_to_not_yet_made_is_checked_at_its_nearest_parent(tmp_path: Path) -> None:
    app = inventory(tmp_path).apps_on("h1")["shop"]
    rows = probes.parse(sh("\n".join(probes.writable(app))))
    assert rows == [("writable", str(tmp_path), True, [])]
    [f] = check.findings(rows, app, None, "deploy")
    assert f.ok and f.detail == f"{tmp_path} (to create {app.deploy_to}): writable"


@pytest.mark.parametrize("free", ["10", "0"])
def test_disk_too_small_is_a_problem(tmp_path: Path, free: str) -> None:
    app = inventory(tmp_path).apps_on("h1")["shop"]
    [f] = check.findings([("disk", "/srv", True, [free, "100"])], app, 1024 * 1024, "deploy")
    assert not f.ok and f.detail.endswith("not enough")


@pytest.mark.parametrize(("free", "warned"), [("150", True), ("199", True), ("200", False), ("5000", False)])
def test_free_disk_below_two_releases_is_a_warning(tmp_path: Path, free: str, warned: bool) -> None:
    """A release of 100 KiB (the current one), an upload of 10 KiB: enough for this deploy from 110 KiB,
    a warning below two releases (200 KiB), never a problem (the host stays ok)."""
    app = inventory(tmp_path).apps_on("h1")["shop"]
    found = check.findings([("disk", "/srv", True, [free, "100"])], app, 10 * 1024, "deploy")
    assert check.problems(found) == []
    warnings = [f for f in found if f.note and not f.ok]
    assert [f.detail for f in warnings] == ([f"warning: {free} KiB free under /srv is below two releases "
                                             "(200 KiB): a later deploy may run out of space"] if warned else [])
