"""The `deploytool` command: `--version`, and `init` writing a project's files without overwriting any."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from deploytool.init import FILES, app_name

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
WRITTEN = ["fabfile.py", "fabric.yaml", "inventories/production.yml", ".github/workflows/deploy.yml"]


def run(cwd: Path, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / program), *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=60)


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "Billing App"
    root.mkdir()
    return root


def test_version_is_the_package_version(tmp_path: Path) -> None:
    r = run(tmp_path, "deploytool", "--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"deploytool {metadata.version('deploytool')}"


def test_init_writes_a_project_that_fab_can_use(app: Path) -> None:
    r = run(app, "deploytool", "init")
    assert r.returncode == 0, r.stderr
    assert sorted(files(app)) == sorted(WRITTEN) == sorted(FILES)
    assert "from deploytool.tasks import ns" in (app / "fabfile.py").read_text()
    # The example inventory is valid as written and is the default of fabric.yaml.
    check = run(app, "fab", "inventory.check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"inventory {app / 'inventories' / 'production.yml'}: ok")
    assert "billing-app  /srv/billing-app" in check.stdout
    render = run(app, "fab", "workers.render", "--host", "worker-2", "--out", "units")
    assert render.returncode == 0, render.stderr
    assert (app / "units" / "billing-app-jobs@.service").is_file()
    assert len(list((app / "units" / "billing-app-workers.target.wants").iterdir())) == 4


def test_init_refuses_to_overwrite_naming_every_file_and_writes_none(app: Path) -> None:
    (app / "fabfile.py").write_text("# mine\n")
    (app / ".github" / "workflows").mkdir(parents=True)
    (app / ".github" / "workflows" / "deploy.yml").write_text("name: mine\n")
    before = files(app)
    r = run(app, "deploytool", "init")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [f"error: {app}: would overwrite fabfile.py, .github/workflows/deploy.yml "
                                     "(nothing written; --force replaces them)"]
    assert files(app) == before


def test_init_force_replaces_existing_files(app: Path) -> None:
    (app / "fabfile.py").write_text("# mine\n")
    r = run(app, "deploytool", "init", "--force")
    assert r.returncode == 0, r.stderr
    assert "replaced fabfile.py" in r.stdout.splitlines()
    assert "wrote fabric.yaml" in r.stdout.splitlines()
    assert "from deploytool.tasks import ns" in (app / "fabfile.py").read_text()
    assert sorted(files(app)) == sorted(WRITTEN)


def test_init_takes_a_directory_and_refuses_a_missing_one(tmp_path: Path) -> None:
    assert run(tmp_path, "deploytool", "init", "shop").returncode == 2
    (tmp_path / "shop").mkdir()
    r = run(tmp_path, "deploytool", "init", "shop")
    assert r.returncode == 0, r.stderr
    assert sorted(files(tmp_path / "shop")) == sorted(WRITTEN)


def test_deploytool_without_a_command_shows_usage(tmp_path: Path) -> None:
    r = run(tmp_path, "deploytool")
    assert r.returncode == 2 and "init" in r.stderr


@pytest.mark.parametrize(("directory", "expected"), [
    ("shop", "shop"), ("Billing App", "billing-app"), ("my_app.v2", "my_app.v2"), ("--x--", "x"), ("@@@", "app"),
])
def test_app_name_from_the_directory(tmp_path: Path, directory: str, expected: str) -> None:
    assert app_name(tmp_path / directory) == expected


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                   check=True, capture_output=True)


def test_init_writes_the_groups_the_procfile_and_sidekiq_yml_describe(app: Path) -> None:
    (app / "config").mkdir()
    (app / "Procfile").write_text("web: bundle exec puma -p $PORT\nworker: bundle exec sidekiq -C config/sidekiq.yml\n"
                                  "release: bin/rails db:migrate\n")
    (app / "config" / "sidekiq.yml").write_text(":concurrency: 10\n:queues:\n  - [critical, 2]\n  - default\n")
    (app / "Gemfile.lock").write_text("GEM\n  specs:\n    sidekiq (7.2.4)\n")
    (app / ".venv").mkdir()
    r = run(app, "deploytool", "init")
    assert r.returncode == 0, r.stderr
    assert "updated .gitignore (.venv/ added)" in r.stdout.splitlines()
    assert (app / ".gitignore").read_text() == ".venv/\n"
    text = (app / "inventories" / "production.yml").read_text()
    apps = yaml.safe_load(text)["apps"]["billing-app"]
    assert apps["workers"] == {
        "web": {"procfile": "web", "kind": "command", "processes": 1},
        "worker": {"procfile": "worker", "kind": "sidekiq", "processes": 1, "queues": [{"critical": 2}, "default"]},
    }
    # Each guess says what it was read from.
    lines = [ln.strip() for ln in text.splitlines()]
    assert "web:                            # Procfile: web: bundle exec puma -p $PORT" in lines
    assert any(ln.startswith("kind: sidekiq") and ln.endswith("# its command runs sidekiq; sidekiq 7.2.4 in "
                                                              "Gemfile.lock") for ln in lines)
    assert any(ln.startswith("queues: [{critical: 2}, default]") and ln.endswith("# from config/sidekiq.yml")
               for ln in lines)
    assert "# concurrency 10 per process: config/sidekiq.yml (Sidekiq reads it through -C)" in lines
    assert any(ln.startswith("# not a group: release: bin/rails db:migrate") for ln in lines)
    overrides = yaml.safe_load(text)["hosts"]["worker-2"]["apps"]
    assert overrides == {"billing-app": {"workers": {"worker": {"processes": 2}}}}

    # The Procfile is read at the revision: committed, the inventory validates and renders its commands.
    git(app, "init", "-q", "-b", "main")
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "app")
    check = run(app, "fab", "inventory.check")
    assert check.returncode == 0, check.stderr
    assert "worker: sidekiq 2 processes, queues critical:2,default" in check.stdout
    render = run(app, "fab", "workers.render", "--host", "worker-1", "--out", "units")
    assert render.returncode == 0, render.stderr
    assert "ExecStart=bundle exec puma -p 5000\n" in (app / "units" / "billing-app-web@.service").read_text()
    assert ("ExecStart=bundle exec sidekiq -C config/sidekiq.yml -t 25 -g billing-app-worker-%i\n"
            in (app / "units" / "billing-app-worker@.service").read_text())


def test_init_keeps_a_gitignore_that_ignores_the_venv_already(app: Path) -> None:
    (app / ".venv").mkdir()
    (app / ".gitignore").write_text("/.venv\n*.pyc")
    assert run(app, "deploytool", "init").returncode == 0
    assert (app / ".gitignore").read_text() == "/.venv\n*.pyc"
    (app / ".gitignore").write_text("*.pyc")
    assert run(app, "deploytool", "init", "--force").returncode == 0
    assert (app / ".gitignore").read_text() == "*.pyc\n.venv/\n"


def test_the_readme_example_is_what_init_writes(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text().split("## Quick start on your own hosts", 1)[1].split("\n## ", 1)[0]
    procfile = readme.split("```text\n# Procfile\n", 1)[1].split("```", 1)[0]
    expected = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    shop = tmp_path / "shop"
    (shop / "config").mkdir(parents=True)
    (shop / "Procfile").write_text(procfile)
    (shop / "config" / "sidekiq.yml").write_text(":concurrency: 10\n:queues:\n  - [critical, 2]\n  - default\n")
    (shop / "Gemfile.lock").write_text("GEM\n  specs:\n    sidekiq (7.2.4)\n")
    assert run(shop, "deploytool", "init").returncode == 0
    assert expected in (shop / "inventories" / "production.yml").read_text()
