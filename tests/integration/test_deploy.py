"""`fab deploy`, `releases`, `rollback` against the sandbox fleet: real sshd, systemd, Redis, workers."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    APP_HOSTS,
    DEPLOY_TO,
    ROOT,
    fab,
    fab_json,
    readlink_current,
    ssh,
    variant,
)

pytestmark = pytest.mark.integration


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def releases(host: str, inventory: str | None = None) -> list[dict[str, Any]]:
    args = ["releases", "--host", host] + (["--inventory", inventory] if inventory else [])
    code, data = fab_json(*args)
    assert code == 0, data
    [entry] = data["hosts"]
    rows: list[dict[str, Any]] = entry["releases"]
    return rows


def plain_app(data: dict[str, Any], **settings: Any) -> None:
    """A second app without workers, for the tests that deploy often: fast and independent."""
    sample = data["apps"]["sample"]
    data["apps"]["plain"] = {
        "roles": ["app"], "source": sample["source"], "deploy_to": "/srv/plain", "keep_releases": 2,
        "linked_dirs": ["log"], **settings,
    }


def test_deploy_redeploy_releases_rollback(deployed: None) -> None:
    first = readlink_current("prod-a")
    code, report = fab_json("deploy", "--host", "prod-a")
    assert code == 0, report
    [host] = report["hosts"]
    assert host["status"] == "ok" and host["revision"] == head_commit()
    stages = [s["name"] for s in host["stages"]]
    assert stages == ["connect", "check", "lock", "upload", "code", "shared", "switch", "units", "quiet",
                      "restart", "cleanup", "unlock"]
    # One connection, few round trips: the stages travel in five scripts.
    assert host["connections"] == 1 and host["commands"] <= 8 and host["uploads"] == 1
    second = readlink_current("prod-a")
    assert second == f"{DEPLOY_TO}/releases/{host['release']}" and second != first
    assert ssh("prod-a", f"cat {second}/REVISION").stdout.strip() == head_commit()
    # shared links and the lock released
    assert ssh("prod-a", f"readlink {second}/config/app.env").stdout.strip() == f"{DEPLOY_TO}/shared/config/app.env"
    assert ssh("prod-a", f"test -e {DEPLOY_TO}/.deploy.lock", check=False).returncode == 1

    rows = releases("prod-a")
    assert rows[0]["release"] == host["release"] and rows[0]["current"]
    assert [r["release"] for r in rows] == sorted((r["release"] for r in rows), reverse=True)

    r = fab("rollback", "--host", "prod-a")
    assert r.returncode == 0, r.stderr
    assert readlink_current("prod-a") == first
    assert fab("workers.status", "--host", "prod-a").returncode == 0
    log = ssh("prod-a", f"cat {DEPLOY_TO}/revisions.log").stdout
    assert f"deployed as release {host['release']}" in log
    assert f"rolled back to release {Path(first).name}" in log.splitlines()[-1]


def test_keep_releases_never_removes_current(sample_shared: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, lambda d: plain_app(d, keep_releases=2))
    names = []
    for _ in range(3):
        code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-b", "--app", "plain")
        assert code == 0, report
        names.append(report["hosts"][0]["release"])
    assert len(set(names)) == 3
    left = ssh("prod-b", "ls /srv/plain/releases").stdout.split()
    assert left == names[1:]
    # Roll back to the oldest kept release, deploy again: cleanup keeps the current one.
    assert fab("rollback", "--inventory", inv, "--host", "prod-b", "--app", "plain",
               "--release", names[1]).returncode == 0
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-b", "--app", "plain")
    assert code == 0
    left = ssh("prod-b", "ls /srv/plain/releases").stdout.split()
    assert report["hosts"][0]["release"] in left and len(left) == 2


def test_two_concurrent_deploys_exactly_one_wins(sample_shared: None, tmp_path: Path) -> None:
    # A slow build keeps the first deploy holding the lock while the second tries.
    inv = variant(tmp_path, lambda d: plain_app(d, build=["sleep 3"]))
    results: list[subprocess.CompletedProcess[str]] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        results.append(fab("deploy", "--inventory", inv, "--host", "prod-a", "--app", "plain"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 1)
    assert "is being deployed by" in loser.stderr and "pid" in loser.stderr
    assert ssh("prod-a", "test -e /srv/plain/.deploy.lock", check=False).returncode == 1


def test_stale_lock_is_cleared_with_force_unlock(sample_shared: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, lambda d: plain_app(d))
    holder = '{"user": "ann", "controller": "elsewhere", "pid": 1, "revision": "x", "release": "y", "started": "z"}'
    ssh("prod-a", f"mkdir -p /srv/plain/.deploy.lock && echo '{holder}' > /srv/plain/.deploy.lock/holder")
    r = fab("deploy", "--inventory", inv, "--host", "prod-a", "--app", "plain")
    assert r.returncode == 1 and "ann@elsewhere pid 1" in r.stderr
    r = fab("deploy", "--inventory", inv, "--host", "prod-a", "--app", "plain", "--force-unlock")
    assert r.returncode == 0, r.stderr


def test_failing_build_keeps_current_and_workers(deployed: None, tmp_path: Path) -> None:
    before = readlink_current("prod-b")
    inv = variant(tmp_path, lambda d: d["apps"]["sample"].update(build=["echo building", "exit 7"]))
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-b")
    assert code == 1
    [host] = report["hosts"]
    assert host["status"] == "failed" and "build" in host["error"] and "exit 7" in host["error"]
    assert readlink_current("prod-b") == before
    assert ssh("prod-b", f"test -e {DEPLOY_TO}/releases/{host['release']}", check=False).returncode == 1
    assert ssh("prod-b", f"test -e {DEPLOY_TO}/.deploy.lock", check=False).returncode == 1
    assert fab("workers.status", "--host", "prod-b").returncode == 0


def test_unreachable_host_fails_fast_others_deploy(deployed: None, tmp_path: Path) -> None:
    def add_ghost(d: dict[str, Any]) -> None:
        d["hosts"]["ghost"] = {**d["hosts"]["prod-b"], "address": "10.213.0.99", "connect_timeout": 3}
        d["hosts"]["ghost"].pop("apps", None)

    inv = variant(tmp_path, add_ghost)
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-b,ghost")
    assert code == 1
    by_host = {h["host"]: h for h in report["hosts"]}
    assert by_host["prod-b"]["status"] == "ok"
    assert by_host["ghost"]["status"] == "failed" and "connect" in by_host["ghost"]["error"]
    assert by_host["ghost"]["stages"][0]["seconds"] < 30


def _host_state(host: str) -> str:
    return ssh(host, f"find {DEPLOY_TO} /etc/systemd/system -maxdepth 3 -printf '%p %l %s %T@\\n' | sort; "
                     f"cat {DEPLOY_TO}/revisions.log; systemctl show -p MainPID 'sample-*@*.service'").stdout


def test_dry_run_changes_nothing(deployed: None) -> None:
    before = {h: _host_state(h) for h in APP_HOSTS}
    concise = fab("deploy", "--dry-run")
    assert concise.returncode == 0, concise.stderr
    # By default the stages by name, and no command: a few lines per host.
    assert "  stages: check, lock, upload, code, shared, switch, units, quiet, restart, cleanup, unlock" in \
        concise.stdout, concise.stdout
    assert "tar -xzf" not in concise.stdout and len(concise.stdout.splitlines()) < 30, concise.stdout
    r = fab("deploy", "--dry-run", "--verbose")
    assert r.returncode == 0, r.stderr
    for stage in ("[check]", "[lock]", "[code]", "[switch]", "[units]", "[restart]"):
        assert stage in r.stdout
    assert "prod-a: sample" in r.stdout and "prod-b: sample" in r.stdout
    # The archive strategy's plan: upload then unpack (never the git strategy's mirror).
    assert "    upload git archive " in r.stdout and "tar -xzf" in r.stdout and "git clone" not in r.stdout
    assert "(no unit changes)" in r.stdout
    assert {h: _host_state(h) for h in APP_HOSTS} == before


def test_secrets_are_not_printed(deployed: None, tmp_path: Path) -> None:
    secret = "s3cr3t-t0ken-value"
    inv = variant(tmp_path, lambda d: d["apps"]["sample"].update(environment={"API_TOKEN": secret},
                                                                 build=["test -n \"$API_TOKEN\""]))
    r = fab("deploy", "--inventory", inv, "--host", "prod-a", "--dry-run", "--verbose")
    # The units stage names the environment files that would change, the build the app's file it writes
    # first (deploytool.context): names only, no content, not even base64-encoded.
    assert r.returncode == 0 and "sidekiq.env: (environment file changed)" in r.stdout, r.stdout
    assert "_app.env: (environment file, written if changed; content not shown)" in r.stdout
    assert "base64" not in r.stdout and "export API_TOKEN" not in r.stdout
    assert secret not in r.stdout + r.stderr
    code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-a")
    assert code == 0, report
    assert secret not in json.dumps(report)
    # On the host: not in the (world-readable) units; in a root-only file the workers get it from.
    assert secret not in ssh("prod-a", "cat /etc/systemd/system/sample-*.service").stdout
    env_file = "/etc/deploytool/sample/sidekiq.env"
    assert ssh("prod-a", f"stat -c '%U:%G %a' {env_file}").stdout.split() == ["root:root", "600"]
    assert ssh("prod-a", f"cat {env_file}", check=False).returncode != 0
    pid = "$(systemctl show -p MainPID --value sample-sidekiq@1.service)"
    environ = ssh("prod-a", f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert f"API_TOKEN={secret}" in environ.stdout.splitlines()
    r = fab("deploy", "--inventory", inv, "--host", "prod-a")
    assert r.returncode == 0 and secret not in r.stdout + r.stderr
    assert fab("deploy", "--host", "prod-a").returncode == 0  # back to the sandbox's own units


def test_unknown_host_key_is_refused_with_fingerprint(deployed: None, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = variant(tmp_path, lambda d: d["hosts"]["prod-a"].update(known_hosts=str(empty)))
    r = fab("deploy", "--inventory", inv, "--host", "prod-a")
    assert r.returncode == 1
    assert "not in" in r.stderr and "SHA256:" in r.stderr
    assert empty.read_text() == ""  # never auto-added


def test_changed_host_key_is_refused(deployed: None, tmp_path: Path) -> None:
    from deploytool.sandbox import KNOWN_HOSTS

    # prod-b's key recorded under prod-a's address: what a man in the middle would look like.
    lines = Path(KNOWN_HOSTS).read_text().splitlines()
    b_keys = [ln.split(None, 1)[1] for ln in lines if ln.split(None, 1)[0].split(",")[0] in ("10.213.0.12",)]
    assert b_keys
    forged = tmp_path / "known_hosts"
    forged.write_text("".join(f"10.213.0.11 {k}\n" for k in b_keys))
    inv = variant(tmp_path, lambda d: d["hosts"]["prod-a"].update(known_hosts=str(forged)))
    r = fab("workers.status", "--inventory", inv, "--host", "prod-a")
    assert r.returncode == 1 and "MISMATCH" in r.stdout + r.stderr


def test_bad_input_exits_2_and_touches_nothing(deployed: None, tmp_path: Path) -> None:
    before = _host_state("prod-a")
    assert fab("deploy", "--host", "nope").returncode == 2
    bad = variant(tmp_path, lambda d: d["apps"]["sample"]["workers"]["sidekiq"].update(processes=-1))
    r = fab("deploy", "--inventory", bad, "--host", "prod-a")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "apps.sample.workers.sidekiq.processes" in r.stderr
    assert "Traceback" not in r.stderr
    assert _host_state("prod-a") == before


def test_git_strategy_keeps_a_mirror_and_exports_the_revision(sample_shared: None, tmp_path: Path) -> None:
    from deploytool.sandbox.ssh import ssh_options

    # The app's repository lives on a git server; here, a bare repository on prod-b reached over ssh.
    ssh("prod-b", "rm -rf /home/deploy/sample.git && git init -q --bare /home/deploy/sample.git")
    env = {"GIT_SSH_COMMAND": "ssh " + " ".join(ssh_options()), "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "-C", str(ROOT), "push", "-q", "deploy@10.213.0.12:/home/deploy/sample.git",
                    "HEAD:refs/heads/main"], env=env, check=True, capture_output=True)
    inv = variant(tmp_path, lambda d: plain_app(d, source={"strategy": "git", "revision": "main",
                                                           "repository": "/home/deploy/sample.git"}))
    for _ in range(2):  # the first deploy clones the mirror, the second updates it
        code, report = fab_json("deploy", "--inventory", inv, "--host", "prod-b", "--app", "plain")
        assert code == 0, report
        assert report["hosts"][0]["revision"] == head_commit()
    current = ssh("prod-b", "readlink /srv/plain/current").stdout.strip()
    assert ssh("prod-b", f"cat {current}/REVISION").stdout.strip() == head_commit()
    assert ssh("prod-b", "git -C /srv/plain/repo rev-parse --is-bare-repository").stdout.strip() == "true"
    assert ssh("prod-b", f"test -f {current}/README.md").returncode == 0


def test_fleet_deploy_restarts_workers_rolling(deployed: None) -> None:
    def restarts(*extra: str) -> list[tuple[float, float]]:
        """Per host, the span the restart gate holds: from the start of quiet to the end of restart (Celery's
        quiet, a remote-control round trip per node, takes long enough to matter)."""
        code, report = fab_json("deploy", "--host", "prod-a,prod-b", *extra)
        assert code == 0, report
        spans = []
        for h in report["hosts"]:
            stages = {s["name"]: s for s in h["stages"]}
            quiet, restart = stages["quiet"], stages["restart"]
            spans.append((quiet["started"], restart["started"] + restart["seconds"]))
        assert len(spans) == 2
        return sorted(spans)

    first, second = restarts()
    assert first[1] <= second[0], "by default one host restarts its workers at a time"
    first, second = restarts("--restart-batch", "100%")
    assert second[0] < first[1], "with --restart-batch 100% both restart together"
