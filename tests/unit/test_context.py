"""The runtime context builder: commands run for an app as its units run (systemd-run argv), quoting that
survives hostile values, and environment values only ever in environment files, never in argv."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from deploytool import context, units
from deploytool.commands.requeue import requeues
from deploytool.inventory import App, Host, Inventory, WorkerGroup, load_inventory
from deploytool.operations.workers import Workers
from deploytool.units import DEFAULT_PATH, render_app

UNITS = Path(__file__).resolve().parent / "inventories" / "units.yml"
SECRET = "s3cr3t-'$(touch /tmp/pwned)'-value"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(UNITS)


def one_app(app: App, tmp_path: Path, user: str = "deploy") -> Inventory:
    return Inventory(tmp_path / "inv.yml", {"h": Host(address="192.0.2.1", user=user, roles=("app",))},
                     {app.name: app}, {"h": {app.name: app}})


def secret_app(systemd: str = "system", **extra: object) -> App:
    return App.model_validate({
        "name": "shop", "source": {"repository": "/nonexistent"}, "deploy_to": "/srv/shop", "systemd": systemd,
        "environment": {"TOKEN": SECRET}, "env_file": "config/app.env", "redis": "redis://10.0.0.5:6379/0",
        "workers": {"rq": {"kind": "rq", "environment": {"GROUP_TOKEN": SECRET + "-group"}},
                    "celery": {"kind": "celery", "queues": ["mail"], "environment": {"X": SECRET}}},
        **extra,
    })


def test_system_mode_runs_as_the_groups_user_with_its_files(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    argv = context.in_context(inv, "w1", app, ["rake", "db:migrate"], app.workers["rq"])
    assert argv == [
        "sudo", "-n", "systemd-run", "--quiet", "--wait", "--collect", "--pipe", "--uid=rqrunner",
        "--property=WorkingDirectory=/srv/shop/current",
        "--property=EnvironmentFile=/etc/deploytool/shop/rq.env",
        "--property=EnvironmentFile=/srv/shop/shared/config/app.env",
        "--property=UMask=0027",
        "--", "/usr/bin/env", "rake", "db:migrate",
    ]


def test_app_level_runs_as_the_ssh_user_with_the_app_file_in_a_tty(inv: Inventory) -> None:
    app = inv.apps_on("w2")["shop"]
    argv = context.in_context(inv, "w2", app, ["bin/console"], tty=True, cwd="/srv/shop/releases/1")
    assert "--pty" in argv and "--pipe" not in argv
    assert "--uid=ops" in argv
    assert "--property=EnvironmentFile=/etc/deploytool/shop/_app.env" in argv
    assert "--property=WorkingDirectory=/srv/shop/releases/1" in argv


def test_tolerant_context_ignores_a_missing_release_and_files(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    argv = context.in_context(inv, "w1", app, ["true"], app.workers["rq"], tolerant=True)
    assert "--property=WorkingDirectory=-/srv/shop/current" in argv
    assert "--property=EnvironmentFile=-/etc/deploytool/shop/rq.env" in argv


def test_path_is_the_inventorys_before_systemds_default_in_units_and_commands(tmp_path: Path) -> None:
    app = secret_app(path=["/home/deploy/.rbenv/shims", "/opt/py/bin"])
    app = app.model_copy(update={"workers": {
        **app.workers, "celery": app.workers["celery"].model_copy(update={"path": ("/srv/shop/venv/bin",)})}})
    inv = one_app(app, tmp_path)
    rbenv = f"/home/deploy/.rbenv/shims:/opt/py/bin:{DEFAULT_PATH}"
    assert f"--setenv=PATH={rbenv}" in context.in_context(inv, "h", app, ["ruby", "-v"])
    assert f"--setenv=PATH={rbenv}" in context.in_context(inv, "h", app, ["rq"], app.workers["rq"])
    venv = f"--setenv=PATH=/srv/shop/venv/bin:{DEFAULT_PATH}"
    assert venv in context.in_context(inv, "h", app, ["celery"], app.workers["celery"])
    # The units get it through their environment files.
    assert units.environment(app, app.workers["rq"])["PATH"] == rbenv
    assert units.environment(app, app.workers["celery"])["PATH"] == f"/srv/shop/venv/bin:{DEFAULT_PATH}"


def test_without_path_units_and_commands_keep_systemds_default(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    assert not any(a.startswith("--setenv") for a in context.in_context(inv, "w1", app, ["x"]))
    assert "PATH=" not in "".join(u.content for u in render_app(inv, "w1", app))
    assert all("PATH" not in units.environment(app, g) for g in app.workers.values())


def test_a_path_entry_with_a_colon_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain ':'"):
        secret_app(path=["/opt/a:/opt/b"])
    with pytest.raises(ValueError, match="absolute"):
        secret_app(path=["bin"])


def test_no_environment_value_in_any_command(tmp_path: Path) -> None:
    for mode in ("system", "user"):
        app = secret_app(mode)
        inv = one_app(app, tmp_path)
        groups = (None, *app.workers.values())
        texts = [shlex.join(context.in_context(inv, "h", app, ["sh", "-c", "env"], g)) for g in groups]
        texts += Workers(inv, "h", app).quiet_commands()
        texts += ["\n".join(requeues(inv, "h", app, [app.workers["rq"]])), context.resolve_programs(inv, "h", app)]
        texts.append(context.env_files_script(app))  # base64 in a here-document, not in clear
        for text in texts:
            assert "s3cr3t" not in text and "GROUP_TOKEN" not in text and "TOKEN=" not in text, text


def stub_systemd_run(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A stand-in for systemd-run that records its argv (NUL-separated), to run the user-mode wrapper
    for real in a local shell: the quoting under test is the shell's and the wrapper's, not systemd's."""
    bin_dir, out = tmp_path / "bin", tmp_path / "argv"
    bin_dir.mkdir()
    stub = bin_dir / "systemd-run"
    stub.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > {shlex.quote(str(out))}\n")
    stub.chmod(0o755)
    home = tmp_path / "home dir $x"
    home.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home)}
    return env, out


HOSTILE = ["python3", "-c", "import sys; print(sys.argv)", "it's", '"quoted"', "$HOME", "`id`", "a;b", "", "%h",
           "two\nlines", "-p", "--", "ünï"]


def test_user_mode_wrapper_passes_every_argument_through_unchanged(inv: Inventory, tmp_path: Path) -> None:
    app = inv.apps_on("w1")["tools"]  # user mode, deploy_to with a space and a %
    argv = context.in_context(inv, "w1", app, HOSTILE)
    env, out = stub_systemd_run(tmp_path)
    subprocess.run(["sh", "-c", shlex.join(argv)], env=env, check=True)
    got = out.read_bytes().decode().split("\0")[:-1]
    assert got == [
        "--user", f"--property=EnvironmentFile={env['HOME']}/.config/deploytool/tools/_app.env",
        "--quiet", "--wait", "--collect", "--pipe",
        "--property=WorkingDirectory=/home/deploy/apps/tools 100%/current", "--property=UMask=0027",
        "--", "/usr/bin/env", *HOSTILE,
    ]


def test_system_mode_argv_survives_the_shell(inv: Inventory, tmp_path: Path) -> None:
    app = inv.apps_on("w1")["shop"]
    argv = context.in_context(inv, "w1", app, HOSTILE)
    r = subprocess.run(["sh", "-c", "printf '%s\\0' " + shlex.join(argv)], capture_output=True, check=True)
    assert r.stdout.decode().split("\0")[:-1] == argv


def test_env_file_holds_path_app_group_and_redis(tmp_path: Path) -> None:
    app = secret_app(path=["/opt/py/bin"])
    assert context.environment(app) == {"PATH": f"/opt/py/bin:{DEFAULT_PATH}", "TOKEN": SECRET,
                                        "REDIS_URL": "redis://10.0.0.5:6379/0"}
    assert units.environment(app, app.workers["rq"])["PATH"] == f"/opt/py/bin:{DEFAULT_PATH}"
    [app_file] = context.app_env_files(app)
    assert app_file.path == "/etc/deploytool/shop/_app.env"
    assert context.app_env_files(App.model_validate({"name": "x", "source": {"repository": "/r"},
                                                     "deploy_to": "/srv/x"})) == []


def test_programs_are_resolved_per_group_in_its_own_context(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    text = context.resolve_programs(inv, "w1", app)
    lines = text.splitlines()
    assert lines[0].startswith("unresolved=0  # ") and lines[-1] == '[ "$unresolved" = 0 ]'
    checks = lines[1:-1]
    assert len(checks) == len(inv.groups_on("w1", app))
    [rq] = [c for c in checks if "EnvironmentFile=-/etc/deploytool/shop/rq.env" in c]
    assert "--uid=rqrunner" in rq and rq.endswith(" @@deploytool-program rq rq || unresolved=1")
    # Programs inside the release (bin/sneakers, .venv/bin/dramatiq) are not there before a deploy.
    before = context.resolve_programs(inv, "w1", app, skip_release=True)
    assert "/srv/shop/current/bin/sneakers" in text and "/srv/shop/current/" not in before
    assert len(before.splitlines()) == len(lines) - 2


def test_resolve_script_reports_found_and_missing_programs(tmp_path: Path) -> None:
    # The resolving shell snippet itself, run locally (the context around it runs on hosts).
    argv = ["/bin/sh", "-c", context._RESOLVE, context.PROGRAM]
    found = subprocess.run([*argv, "web", "sh"], capture_output=True, text=True, check=False)
    missing = subprocess.run([*argv, "rq", "no-such-program"], capture_output=True, text=True, check=False)
    assert found.returncode == 0 and missing.returncode == 127
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    for not_a_program in ("cd", str(plain), "/usr/bin"):  # a builtin, not executable, a directory
        r = subprocess.run([*argv, "g", not_a_program], capture_output=True, text=True, check=False)
        assert r.returncode == 127 and r.stdout == f"{context.PROGRAM} g -\n", not_a_program
    assert "worker group rq: program no-such-program not found" in missing.stderr
    parsed = context.parse_programs(found.stdout + missing.stdout + "other line\n")
    assert parsed == {"web": found.stdout.split()[-1], "rq": None} and parsed["web"].endswith("/sh")


def test_requeue_runs_the_programs_interpreter_in_the_group_context(tmp_path: Path) -> None:
    app = secret_app()
    text = "\n".join(requeues(one_app(app, tmp_path), "h", app, [app.workers["rq"]]))
    first = text.splitlines()[0]
    assert first.startswith("{ sudo -n systemd-run ") and "EnvironmentFile=/etc/deploytool/shop/rq.env" in first
    assert first.endswith(" sh rq default <<'DEPLOYTOOL_REQUEUE_END' "
                          "|| echo 'could not requeue unfinished rq jobs of shop-rq'")
    # The Redis URL (it may hold a password) comes from the environment files, never argv.
    assert "redis://" not in first
    assert text.endswith("| logger -t deploytool-requeue &")


def test_program_is_the_units_program(inv: Inventory) -> None:
    app = inv.apps_on("w1")["shop"]
    assert context.program(app, app.workers["sneakers"])[0] == "/srv/shop/current/bin/sneakers"
    assert context.program(app, app.workers["rq"]) == ["rq"]
    assert context.program(app, WorkerGroup(name="x", kind="celery", command=("celery", "-A", "x"))) == \
        ["celery", "-A", "x"]
