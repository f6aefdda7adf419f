"""The `fab config.upload` builders, run for real by a local shell against a temporary shared/: the
state read, the private temporary file, the atomic rename; and the content never in any command."""

from __future__ import annotations

import getpass
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from deploytool.commands import config as cmd
from deploytool.commands.config import SharedFile
from deploytool.errors import InputError
from deploytool.inventory import App, load_inventory
from deploytool.operations.shared_files import shared_file, workers_user
from deploytool.remote import join, script

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"TOKEN=very-secret-value\n"


def sh(text: str) -> str:
    r = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def env_file(tmp_path: Path) -> SharedFile:
    app = App.model_validate({"name": "shop", "source": {"repository": "/nonexistent"},
                              "deploy_to": str(tmp_path / "shop"), "linked_files": ["config/app.env"]})
    return SharedFile(app, "config/app.env", getpass.getuser())


def put(f: SharedFile, data: bytes) -> Path:
    """What the task does, with a local copy standing in for the SFTP upload."""
    temp = Path(sh(cmd.make_temp(f)).strip())
    assert temp.parent == Path(f.directory) and stat.S_IMODE(temp.stat().st_mode) == 0o600
    # Only the file is private: the workers' user must still reach it through its directory.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(temp.parent.stat().st_mode) == 0o777 & ~umask
    temp.write_bytes(data)
    sh(script(*cmd.install(f, str(temp))))
    return temp


def test_state_absent_then_the_expected_line_after_install(env_file: SharedFile) -> None:
    assert sh(cmd.state(env_file)).strip() == cmd.ABSENT
    temp = put(env_file, SECRET)
    path = Path(env_file.path)
    assert path.read_bytes() == SECRET and not temp.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["app.env"]  # no temporary file left
    sha = hashlib.sha256(SECRET).hexdigest()
    assert sh(cmd.state(env_file)).strip() == cmd.expected_state(env_file, sha)


def test_a_wrong_mode_is_not_current(env_file: SharedFile) -> None:
    put(env_file, SECRET)
    os.chmod(env_file.path, 0o644)
    sha = hashlib.sha256(SECRET).hexdigest()
    assert sh(cmd.state(env_file)).strip() != cmd.expected_state(env_file, sha)


def test_install_renames_over_the_old_file(env_file: SharedFile) -> None:
    put(env_file, b"OLD=1\n")
    old_inode = Path(env_file.path).stat().st_ino
    put(env_file, SECRET)
    assert Path(env_file.path).read_bytes() == SECRET
    assert Path(env_file.path).stat().st_ino != old_inode  # a rename, not a rewrite in place


def test_content_never_in_a_command(env_file: SharedFile) -> None:
    texts = [cmd.state(env_file), cmd.make_temp(env_file), script(*cmd.install(env_file, "/x/.tmp")),
             join(cmd.discard("/x/.tmp"))]
    assert not any("very-secret-value" in t for t in texts)


def test_another_owner_is_read_as_that_user_and_given_the_file_by_sudo_install(env_file: SharedFile) -> None:
    other = SharedFile(env_file.app, env_file.name, "worker", ("reader", "sha256sum", "--", env_file.path))
    assert cmd.state(other).count("reader sha256sum") == 1
    temp = "/t/.app.env.deploytool.X"
    assert cmd.install(other, temp) == [
        ["sudo", "-n", "install", "-m", "600", "-o", "worker", "--", temp, temp + ".owned"],
        ["rm", "-f", "--", temp],
        ["mv", "-f", "--", temp + ".owned", env_file.path],
    ]
    assert [argv[0] for argv in cmd.install(env_file, temp)] == ["chmod", "mv"]


def test_invocation_names_app_and_file(env_file: SharedFile) -> None:
    assert cmd.invocation(env_file.app, "config/app.env") == \
        "fab config.upload --app shop --file config/app.env --from PATH"


def _inventory(tmp_path: Path, groups: str) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(f"""
hosts:
  h1: {{address: 10.0.0.1, user: deploy, roles: [app]}}
apps:
  shop:
    source: {{repository: /srv/git/shop}}
    deploy_to: /srv/shop
    linked_files: [config/app.env]
    workers:
{groups}
""")
    return path


def test_owner_is_the_workers_user(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, "      w: {kind: command, command: [x], user: app}"))
    f = shared_file(inv, "h1", inv.apps_on("h1")["shop"], "config/app.env")
    # Read as the workers' user, through their runtime context.
    assert f.owner == "app" and f.checksum[:3] == ("sudo", "-n", "systemd-run") and "--uid=app" in f.checksum
    inv = load_inventory(_inventory(tmp_path, "      w: {kind: command, command: [x]}"))
    assert workers_user(inv, "h1", inv.apps_on("h1")["shop"]) == "deploy"


def test_not_a_linked_file_is_bad_input_naming_them(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, "      w: {kind: command, command: [x]}"))
    with pytest.raises(InputError) as info:
        shared_file(inv, "h1", inv.apps_on("h1")["shop"], "config/other.env")
    assert info.value.exit_code == 2
    assert "--file config/other.env" in str(info.value) and "(config/app.env)" in str(info.value)
    assert "\n" not in str(info.value)


def test_groups_with_different_users_are_bad_input(tmp_path: Path) -> None:
    inv = load_inventory(_inventory(tmp_path, "      a: {kind: command, command: [x], user: one}\n"
                                              "      b: {kind: command, command: [x], user: two}"))
    with pytest.raises(InputError, match=r"several users \(one, two\)"):
        workers_user(inv, "h1", inv.apps_on("h1")["shop"])


def upload_task(*args: str) -> subprocess.CompletedProcess[str]:
    # The sandbox inventory, with no sandbox running: contacting a host would fail with exit 1, not 2.
    return subprocess.run([str(ROOT / ".venv/bin/fab"), "-r", str(ROOT), "config.upload", *args],
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["--file", "config/nope.env", "--from", "/dev/null"],
     "app sample: --file config/nope.env: not one of the app's linked_files (config/app.env)"),
    (["--file", "config/app.env", "--from", "/nonexistent/app.env"],
     "--from /nonexistent/app.env: cannot read: No such file or directory"),
    (["--from", "/dev/null"], "config.upload needs --file LINKED_FILE and --from PATH"),
])
def test_upload_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    r = upload_task(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and message in r.stderr and r.stdout == ""
