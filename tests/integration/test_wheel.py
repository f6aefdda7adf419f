"""deploytool as a user adopts it: a wheel built from this repository, installed into a new virtualenv
outside it, `deploytool init` in an app's own git repository, and `fab` run there against the sandbox.

The app is tiny on purpose (one `command` worker group that idles) and deploys to its own deploy_to on
prod-a only, so it costs seconds and leaves the sample app's tests alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, SANDBOX, ssh, wait_for

from deploytool.sandbox import Fleet

pytestmark = pytest.mark.integration

APP = "wheelapp"
DEPLOY_TO = f"/srv/{APP}"
HOST = "prod-a"
WORKER = """#!/bin/sh
# Says what it runs with, then waits for work until it is stopped.
echo "$0 up, greeting=${WHEELAPP_GREETING:-unset}"
exec sleep infinity
"""


def run(cwd: Path, *argv: str | Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **env})


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of this checkout so the build leaves nothing in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", "out"))
    ok(run(tmp, sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", source))
    [built] = (tmp / "dist").glob("deploytool-*.whl")
    return built


@pytest.fixture(scope="module")
def bin_dir(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv outside this checkout with only the wheel (and its dependencies) installed."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    ok(run(venv.parent, sys.executable, "-m", "venv", venv))
    ok(run(venv.parent, venv / "bin" / "pip", "install", "-q", wheel))
    return venv / "bin"


def test_the_wheel_holds_the_templates_the_host_programs_and_the_scaffold(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates" / "systemd").glob("*.j2"):
        assert f"deploytool/templates/systemd/{template.name}" in names
    for program in (ROOT / "deploytool" / "requeue").glob("*.py"):
        assert f"deploytool/requeue/{program.name}" in names
    for scaffold in (ROOT / "deploytool" / "scaffold").iterdir():
        assert f"deploytool/scaffold/{scaffold.name}" in names


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An app's own git repository: one worker script, committed."""
    root = tmp_path / APP
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "work").write_text(WORKER)
    (root / "bin" / "work").chmod(0o755)
    ok(run(root, "git", "init", "-q", "-b", "main"))
    commit(root, "the worker")
    return root


def commit(root: Path, message: str) -> None:
    ok(run(root, "git", "add", "-A"))
    ok(run(root, "git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", message))


def point_at_sandbox(inventory: Path) -> None:
    """The example inventory, its hosts replaced by prod-a and its worker group by the app's own."""
    sandbox = yaml.safe_load(SANDBOX.read_text())["hosts"][HOST]
    data = yaml.safe_load(inventory.read_text())
    data["hosts"] = {HOST: {key: sandbox[key] for key in ("address", "user", "known_hosts", "identity")}
                     | {"roles": ["worker"]}}
    app = data["apps"][APP]
    del app["redis"]
    app["keep_releases"] = 2
    app["workers"] = {"work": {"kind": "command", "processes": 2, "command": ["bin/work"], "timeout": 5}}
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def cleanup(bin_dir: Path, app: Path) -> Iterator[None]:
    yield
    run(app, bin_dir / "fab", "workers.uninstall", "--host", HOST, timeout=300)
    ssh(HOST, f"rm -rf {DEPLOY_TO}", check=False)


def test_init_check_render_and_deploy_from_the_apps_directory(
    fleet: Fleet, bin_dir: Path, app: Path, cleanup: None, tmp_path: Path
) -> None:
    fab = bin_dir / "fab"
    assert ok(run(app, bin_dir / "deploytool", "--version")).startswith("deploytool ")
    ok(run(app, bin_dir / "deploytool", "init"))
    # The example inventory validates as written.
    assert ok(run(app, fab, "inventory.check")).startswith(f"inventory {app}/inventories/production.yml: ok")

    point_at_sandbox(app / "inventories" / "production.yml")
    commit(app, "deploy with deploytool")
    summary = ok(run(app, fab, "inventory.check"))
    assert f"{HOST}  deploy@" in summary and "work: command 2 processes" in summary
    ok(run(app, fab, "workers.render", "--host", HOST, "--out", tmp_path / "units"))
    unit = (tmp_path / "units" / f"{APP}-work@.service").read_text()
    assert f"ExecStart={DEPLOY_TO}/current/bin/work" in unit

    # Before the linked file is there, the check names it with the command that uploads it.
    checked = run(app, fab, "check", "--host", HOST)
    assert checked.returncode == 1 and "fab config.upload --app wheelapp --file config/app.env" in checked.stdout, \
        checked.stdout + checked.stderr
    env_file = tmp_path / "app.env"
    env_file.write_text("WHEELAPP_GREETING=hello\n")
    assert ok(run(app, fab, "config.upload", "--file", "config/app.env", "--from", env_file)).endswith(": changed\n")
    ok(run(app, fab, "check", "--host", HOST))
    ok(run(app, fab, "deploy", "--host", HOST))
    head = ok(run(app, "git", "rev-parse", "HEAD")).strip()
    current = ssh(HOST, f"readlink {DEPLOY_TO}/current").stdout.strip()
    assert ssh(HOST, f"cat {current}/REVISION").stdout.strip() == head
    ssh(HOST, f"test -x {current}/bin/work")
    ssh(HOST, f"systemctl is-active {APP}-work@1.service {APP}-work@2.service")
    ok(run(app, fab, "workers.status"))

    def greeted() -> bool:
        logs = run(app, fab, "workers.logs", "--host", HOST, "--lines", "20", timeout=60).stdout
        return logs.count("greeting=hello") >= 2

    wait_for(greeted, 60, "both workers to log the env file's greeting")

    # The same app from a URL at a tag: a bare repository, mirrored into the cache on this machine.
    origin = tmp_path / "origin.git"
    ok(run(tmp_path, "git", "clone", "-q", "--bare", app, origin))
    (app / "bin" / "work").write_text(WORKER.replace("up,", "v2 up,"))
    commit(app, "v2")
    ok(run(app, "git", "tag", "v2"))
    ok(run(app, "git", "push", "-q", origin, "main", "v2"))
    inventory = app / "inventories" / "production.yml"
    data = yaml.safe_load(inventory.read_text())
    data["apps"][APP]["source"] = {"strategy": "archive", "repository": f"file://{origin}", "revision": "v2"}
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    cache = tmp_path / "cache"
    ok(run(app, fab, "deploy", "--host", HOST, XDG_CACHE_HOME=str(cache)))
    v2 = ok(run(app, "git", "rev-parse", "v2^{commit}")).strip()
    current = ssh(HOST, f"readlink {DEPLOY_TO}/current").stdout.strip()
    assert ssh(HOST, f"cat {current}/REVISION").stdout.strip() == v2
    assert "v2 up," in ssh(HOST, f"cat {current}/bin/work").stdout
    assert [p.name.startswith("origin-") for p in (cache / "deploytool" / "repos").iterdir()] == [True]
    ssh(HOST, f"systemctl is-active {APP}-work@1.service {APP}-work@2.service")


PROC_APP = "procwheel"
PROCFILE = """\
web: python3 -m http.server $PORT
worker: sidekiq -C config/sidekiq.yml -r ./worker.rb
release: bin/migrate
"""
SIDEKIQ_YML = ":concurrency: 4\n:queues:\n  - [critical, 2]\n  - default\n"


@pytest.fixture
def proc_app(tmp_path: Path, bin_dir: Path) -> Iterator[Path]:
    """An app's repository with a Procfile, config/sidekiq.yml and a Gemfile.lock naming Sidekiq."""
    root = tmp_path / PROC_APP
    (root / "config").mkdir(parents=True)
    (root / "Procfile").write_text(PROCFILE)
    (root / "config" / "sidekiq.yml").write_text(SIDEKIQ_YML)
    (root / "Gemfile.lock").write_text("GEM\n  remote: https://rubygems.org/\n  specs:\n    sidekiq (6.5.12)\n")
    (root / "worker.rb").write_text("require 'sidekiq'\n")
    ok(run(root, "git", "init", "-q", "-b", "main"))
    yield root
    ssh(HOST, f"rm -rf /srv/{PROC_APP}", check=False)


def test_init_in_an_app_with_a_procfile_writes_its_groups_and_check_passes(
    fleet: Fleet, bin_dir: Path, proc_app: Path, tmp_path: Path
) -> None:
    fab = bin_dir / "fab"
    ok(run(proc_app, bin_dir / "deploytool", "init"))
    inventory = proc_app / "inventories" / "production.yml"
    written = yaml.safe_load(inventory.read_text())["apps"][PROC_APP]["workers"]
    assert written == {
        "web": {"procfile": "web", "kind": "command", "processes": 1},
        "worker": {"procfile": "worker", "kind": "sidekiq", "processes": 1, "queues": [{"critical": 2}, "default"]},
    }
    assert "# Procfile: worker: sidekiq -C config/sidekiq.yml -r ./worker.rb" in inventory.read_text()

    # On the sandbox: its host instead of the example ones, the groups as init wrote them.
    sandbox = yaml.safe_load(SANDBOX.read_text())["hosts"][HOST]
    data = yaml.safe_load(inventory.read_text())
    data["hosts"] = {HOST: {key: sandbox[key] for key in ("address", "user", "known_hosts", "identity")}
                     | {"roles": ["worker"]}}
    data["apps"][PROC_APP]["redis"] = "redis://10.213.0.21:6379/10"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    commit(proc_app, "deploy with deploytool")
    summary = ok(run(proc_app, fab, "inventory.check"))
    assert "worker: sidekiq 1 processes, queues critical:2,default" in summary
    ok(run(proc_app, fab, "workers.render", "--host", HOST, "--out", tmp_path / "units"))
    unit = (tmp_path / "units" / f"{PROC_APP}-worker@.service").read_text()
    assert f"ExecStart=sidekiq -C config/sidekiq.yml -r ./worker.rb -t 25 -g {PROC_APP}-worker-%i\n" in unit

    env_file = tmp_path / "app.env"
    env_file.write_text("X=1\n")
    ok(run(proc_app, fab, "config.upload", "--file", "config/app.env", "--from", env_file))
    checked = ok(run(proc_app, fab, "check", "--host", HOST))
    assert "worker: sidekiq -> /usr/bin/sidekiq" in checked and "web: python3 -> " in checked, checked
