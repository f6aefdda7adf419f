"""The release command builders, run for real by a local shell against a temporary deploy_to.

They are plain POSIX shell, the same text sent over SSH, so running them here checks their behaviour
without any host."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from deploytool.commands import release as rel
from deploytool.engine.lock import Holder
from deploytool.inventory import App, Host, Inventory
from deploytool.operations.releases import choose, parse_listing
from deploytool.remote import script


def sh(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=False)


def ok(text: str) -> str:
    r = sh(text)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App.model_validate({
        "name": "shop",
        "source": {"repository": "/nonexistent"},
        "deploy_to": str(tmp_path / "shop"),
        "keep_releases": 2,
        "linked_files": ["config/app.env"],
        "linked_dirs": ["log", "tmp/pids"],
        "environment": {"GREETING": "hello world", "TOKEN": "s3cr3t-value"},
        "env_file": "config/app.env",
    })


def tarball(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "code.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def release(app: App, tmp_path: Path, name: str) -> None:
    archive = tarball(tmp_path, {"app.txt": name, "log/keep": "x"})
    ok(rel.check(app))
    ok(rel.unpack_archive(app, name, str(archive), "c0ffee" + name))
    ok(rel.link_shared(app, name))
    ok(rel.switch_current(app, name))


def test_check_lists_every_missing_linked_file(app: App) -> None:
    two = app.model_copy(update={"linked_files": ("config/app.env", "config/master.key")})
    r = sh(rel.check(two))
    assert r.returncode == 1
    assert "config/app.env" in r.stderr and "config/master.key" in r.stderr
    # Each missing file names the task that puts it in place, ready to run.
    assert "fab config.upload --app shop --file config/master.key --from PATH" in r.stderr
    assert Path(app.deploy_to, "shared/log").is_dir() and Path(app.deploy_to, "shared/tmp/pids").is_dir()


def test_release_links_shared_and_switches_current(app: App, tmp_path: Path) -> None:
    lay = rel.Layout(app)
    ok(rel.check(app.model_copy(update={"linked_files": ()})))
    Path(lay.shared, "config").mkdir()
    Path(lay.shared, "config/app.env").write_text("TOKEN=x\n")
    release(app, tmp_path, "20260101000000")
    current = Path(lay.current)
    assert current.is_symlink() and Path(current.resolve()).name == "20260101000000"
    assert (current / "REVISION").read_text().strip() == "c0ffee20260101000000"
    assert (current / "log").resolve() == Path(lay.shared, "log").resolve()  # a linked dir replaces the code's
    assert (current / "config/app.env").read_text() == "TOKEN=x\n"
    assert not list(Path(lay.releases).glob(".*.tar.gz"))


def test_switch_is_a_rename_never_a_missing_current(app: App, tmp_path: Path) -> None:
    lay = rel.Layout(app)
    Path(lay.shared, "config").mkdir(parents=True)
    Path(lay.shared, "config/app.env").write_text("")
    release(app, tmp_path, "20260101000000")
    # `mv -T` of a prepared symlink is rename(2): the old link is replaced, never absent.
    text = rel.switch_current(app, "20260101000001")
    assert "mv -T" in text and "ln -sfn" in text.split("&&")[0]
    assert not list(Path(app.deploy_to).glob(".current.*"))


def test_cleanup_keeps_newest_and_never_current(app: App, tmp_path: Path) -> None:
    lay = rel.Layout(app)
    Path(lay.shared, "config").mkdir(parents=True)
    Path(lay.shared, "config/app.env").write_text("")
    for n in ("20260101000001", "20260101000002", "20260101000003", "20260101000004"):
        release(app, tmp_path, n)
    ok(rel.switch_current(app, "20260101000001"))  # rolled back to the oldest
    ok(rel.cleanup(app))
    left = sorted(p.name for p in Path(lay.releases).iterdir())
    assert left == ["20260101000001", "20260101000003", "20260101000004"]


def test_listing_and_rollback_choice(app: App, tmp_path: Path) -> None:
    lay = rel.Layout(app)
    Path(lay.shared, "config").mkdir(parents=True)
    Path(lay.shared, "config/app.env").write_text("")
    for n in ("20260101000001", "20260101000002"):
        release(app, tmp_path, n)
    rows = parse_listing(ok(rel.list_releases(app)))
    assert [r["release"] for r in rows] == ["20260101000002", "20260101000001"]
    assert [r["current"] for r in rows] == [True, False]
    assert rows[0]["revision"] == "c0ffee20260101000002"
    assert choose(rows, None) == "20260101000001"
    assert choose(rows, "20260101000001") == "20260101000001"
    with pytest.raises(Exception, match="already current"):
        choose(rows, "20260101000002")
    with pytest.raises(Exception, match="no release older"):
        choose(parse_listing("20260101000002 x\ncurrent 20260101000002\n"), None)


def test_holder_of_a_dead_local_process_is_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    import socket

    dead = Holder("ann", socket.gethostname(), proc.pid, "", "", "")
    alive = Holder("ann", socket.gethostname(), 1, "", "", "")
    elsewhere = Holder("ann", "another-machine", proc.pid, "", "", "")
    assert dead.gone()
    assert not alive.gone()
    assert not elsewhere.gone()  # not provable from here


def test_build_runs_each_step_in_the_release_in_the_app_context(app: App, tmp_path: Path) -> None:
    # What the steps see is tested on a real host (tests/integration/test_context.py); here: where
    # they run, in which context, and that no environment value travels in clear.
    inv = Inventory(tmp_path / "inv.yml", {"h": Host(address="192.0.2.1", user="deploy")}, {"shop": app},
                    {"h": {"shop": app}})
    text = rel.build(inv, "h", app, "20260101000000", ["bundle install", "echo 'done'"])
    release_dir = rel.Layout(app).release("20260101000000")
    assert f"--property=WorkingDirectory={release_dir}" in text
    assert text.count("sudo -n systemd-run ") == 2
    assert "/usr/bin/env /bin/sh -ec 'bundle install' && " in text
    assert "s3cr3t-value" not in text and "hello world" not in text
    assert rel.build(inv, "h", app, "20260101000000", []) == "true"
    plan = rel.build(inv, "h", app, "20260101000000", ["bundle install"], plan=True)
    assert plan.startswith("# _app.env: (environment file, written if changed; content not shown)\n")
    assert "base64" not in plan and "base64" in text


def test_script_names_the_failing_command() -> None:
    r = sh(script(["true"], ["sh", "-c", "exit 4"], ["touch", "/nonexistent/never"]))
    assert r.returncode == 4
    assert r.stderr.strip() == "failed: sh -c 'exit 4'"


def test_holder_json_round_trip() -> None:
    h = Holder.me("abc", "20260101000000")
    assert Holder.parse(h.json()) == h and Holder.parse(h.json()).token == h.token != ""  # type: ignore[union-attr]
    assert json.loads(h.json())["pid"] == h.pid
    assert Holder.parse("not json") is None


def test_release_name_moves_past_the_newest_release(app: App) -> None:
    releases = Path(rel.Layout(app).releases)
    releases.mkdir(parents=True)

    def name(proposed: str) -> str:
        return ok(rel.release_after(app, proposed)).split()[-1]

    assert name("20260101000000") == "20260101000000"
    (releases / "20260101000000").mkdir()
    assert name("20260101000000") == "20260101000001"  # a second deploy within the same second
    (releases / "20261231235959").mkdir()
    assert name("20260101000005") == "20270101000000"  # this machine's clock behind the host's releases
    assert name("20280101000000") == "20280101000000"
