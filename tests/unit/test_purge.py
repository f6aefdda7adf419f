"""`workers.uninstall --purge` removes the app's deploy_to, run in a real shell against a temporary one;
`fab run`'s read-only look for what a command's context needs."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from deploytool.commands import check as probes
from deploytool.commands import release as rel
from deploytool.inventory import App


def app(deploy_to: Path) -> App:
    # User mode: the removal runs as the caller, no sudo (a unit test has no sudo rights).
    return App.model_validate({"name": "shop", "deploy_to": str(deploy_to), "systemd": "user",
                               "source": {"repository": "/srv/git/shop"}})


def bash(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=False, timeout=30)


def test_purge_removes_a_deploy_to_and_nothing_else(tmp_path: Path) -> None:
    d = tmp_path / "shop"
    assert bash(rel.purge(app(d))).returncode == 0  # nothing there: nothing to do
    (d / "releases" / "20260101000000").mkdir(parents=True)
    (d / "shared" / "config").mkdir(parents=True)
    (d / "shared" / "config" / "app.env").write_text("X=1\n")
    (d / "current").symlink_to(d / "releases" / "20260101000000")
    (d / ".deploy.lock").write_text("{}\n")
    r = bash(rel.purge(app(d)))
    assert r.returncode == 0, r.stderr
    assert not d.exists() and tmp_path.exists()


def test_purge_refuses_a_directory_that_is_not_a_deploy_to(tmp_path: Path) -> None:
    (tmp_path / "srv" / "other-app").mkdir(parents=True)
    r = bash(rel.purge(app(tmp_path / "srv")))
    assert r.returncode == 1 and "not a deploy_to?" in r.stderr
    assert (tmp_path / "srv" / "other-app").is_dir()


def test_purge_refuses_while_a_deploy_holds_the_lock(tmp_path: Path) -> None:
    d = tmp_path / "shop"
    (d / "releases").mkdir(parents=True)
    flock = d / ".deploy.flock"
    flock.touch()
    with subprocess.Popen(["flock", str(flock), "sleep", "30"], start_new_session=True) as held:
        try:
            assert bash(f"until ! flock -n {flock} true; do sleep 0.05; done").returncode == 0
            r = bash(rel.purge(app(d)))
            assert r.returncode == rel.LOCK_BUSY and "a deploy holds its lock" in r.stderr
            assert (d / "releases").is_dir()
        finally:
            os.killpg(held.pid, signal.SIGKILL)


def test_missing_names_each_absent_path(tmp_path: Path) -> None:
    (tmp_path / "here").write_text("")
    text = probes.missing([f"{tmp_path}/current/", f"{tmp_path}/here", f"{tmp_path}/env file"], ["no-such-file"])
    r = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert probes.parse_missing(r.stdout) == [f"{tmp_path}/current/", f"{tmp_path}/env file",
                                              f"{tmp_path}/no-such-file"]
