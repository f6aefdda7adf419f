"""A newcomer's first hour, as issue 20 walked it: deploytool from its wheel, `deploytool init` in an RQ app's
own repository, then check -> a dry run that fails as the deploy would (a linked file missing) ->
config.upload --restart -> deploy -> an env file change the workers pick up -> uninstall --purge.

Along the way: the ordinary `APP_ENV: production` masks no file, host or stage name; the sandbox tasks are
not in the app's task list; RQ's missing quiet is a note, not a failure. Judged by the host: files, units,
worker PIDs and their environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import SANDBOX, ssh, wait_for
from test_wheel import bin_dir, commit, ok, run, wheel  # noqa: F401  (module fixtures: the wheel, its venv)

from deploytool.sandbox import Fleet

pytestmark = pytest.mark.integration

APP = "newcomer"
HOST = "prod-a"
DEPLOY_TO = f"/srv/{APP}"
ENV_DIR = f"/etc/deploytool/{APP}"
SECRET = "newcomer-s3cret-value"
UNITS = [f"{APP}-jobs@1.service", f"{APP}-jobs@2.service"]


def point_at_sandbox(inventory: Path) -> None:
    """init's inventory, its hosts replaced by prod-a, its Redis by the sandbox's (a DB of its own)."""
    sandbox = yaml.safe_load(SANDBOX.read_text())["hosts"][HOST]
    data = yaml.safe_load(inventory.read_text())
    data["hosts"] = {HOST: {key: sandbox[key] for key in ("address", "user", "known_hosts", "identity")}
                     | {"roles": ["worker"]}}
    app = data["apps"][APP]
    assert app["environment"] == {"APP_ENV": "production"} and app["workers"]["jobs"]["kind"] == "rq"
    app["redis"] = "redis://10.213.0.21:6379/7"
    app["secrets"] = {"NEWCOMER_TOKEN": SECRET}
    app["workers"]["jobs"]["timeout"] = 5
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))


def pids() -> dict[str, str]:
    out = ssh(HOST, f"systemctl show -p Id,MainPID,ActiveState {' '.join(UNITS)}").stdout
    units = [dict(line.split("=", 1) for line in block.splitlines()) for block in out.strip().split("\n\n")]
    return {u["Id"]: u["MainPID"] for u in units if u["ActiveState"] == "active"}


def greeting(pid: str) -> str:
    environ = ssh(HOST, f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout.splitlines()
    return next((line.split("=", 1)[1] for line in environ if line.startswith("NEWCOMER_GREETING=")), "")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / APP
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "__init__.py").write_text("def hello():\n    return 'hello'\n")
    ok(run(root, "git", "init", "-q", "-b", "main"))
    commit(root, "jobs")
    return root


@pytest.fixture
def cleanup(bin_dir: Path, app: Path) -> Iterator[None]:  # noqa: F811
    yield
    run(app, bin_dir / "fab", "workers.uninstall", "--purge", "--host", HOST, timeout=300)
    ssh(HOST, f"sudo -n rm -rf {DEPLOY_TO} {ENV_DIR}", check=False)


def test_a_newcomers_first_hour(fleet: Fleet, bin_dir: Path, app: Path, cleanup: None,  # noqa: F811
                                tmp_path: Path) -> None:
    fab = bin_dir / "fab"
    ok(run(app, bin_dir / "deploytool", "init"))
    inventory = app / "inventories" / "production.yml"
    point_at_sandbox(inventory)
    commit(app, "deploy with deploytool")
    # The app's task list: deploytool's tasks, not the machine's sandbox.
    listed = ok(run(app, fab, "--list"))
    assert "deploy" in listed and "config.upload" in listed and "sandbox" not in listed

    # Bad input names file and hosts as they are: `production` and `prod-` are not secrets.
    r = run(app, fab, "deploy", "--host", "prod-x")
    assert r.returncode == 2 and r.stderr.strip() == \
        f"error: {inventory}: --host prod-x: no such host (known: {HOST})", r.stderr

    # Before the linked file is there: the check and the dry run both say so, and exit 1.
    checked = run(app, fab, "check", "--host", HOST)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "not installed yet (a deploy installs them)" in checked.stdout and "differ" not in checked.stdout
    (app / "jobs" / "new.py").write_text("# not committed yet\n")
    dry = run(app, fab, "deploy", "--host", HOST, "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    missing = (f"linked file: {DEPLOY_TO}/shared/config/app.env: missing; upload it: "
               f"fab config.upload --app {APP} --file config/app.env --from PATH")
    assert "would fail" in dry.stdout and missing in dry.stdout, dry.stdout
    # Concise: what would fail, the changes in a line each, the stages by name; a few lines, no command.
    assert "stages: check, lock, upload" in dry.stdout and "tar -xzf" not in dry.stdout
    assert f"{APP}-jobs@.service: new unit (" in dry.stdout
    assert len(dry.stdout.splitlines()) < 25, dry.stdout
    assert f"warning: {APP}: " in dry.stderr and "jobs/new.py" in dry.stderr, dry.stderr
    (app / "jobs" / "new.py").unlink()
    assert ssh(HOST, f"test -e {DEPLOY_TO}", check=False).returncode == 1  # the dry run made nothing

    # Upload with --restart before a first deploy: no worker runs yet, none is restarted.
    env_file = tmp_path / "app.env"
    env_file.write_text("NEWCOMER_GREETING=hello\n")
    up = run(app, fab, "config.upload", "--file", "config/app.env", "--from", env_file, "--restart")
    assert ok(up).splitlines() == [f"{HOST}: {APP}: {DEPLOY_TO}/shared/config/app.env: changed"], up.stdout
    ok(run(app, fab, "check", "--host", HOST))

    # The deploy: APP_ENV is production, and no file, host or stage name is masked.
    deployed = run(app, fab, "deploy", "--host", HOST)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    shown = deployed.stdout + deployed.stderr
    assert "***" not in shown and SECRET not in shown, shown
    for stage in ("check", "lock", "upload", "code", "switch", "units", "restart", "cleanup"):
        assert f"{HOST:<10} {APP:<10} {stage:<10} ok" in deployed.stderr, deployed.stderr
    first = pids()
    assert sorted(first) == UNITS and all(greeting(p) == "hello" for p in first.values())
    assert ssh(HOST, f"tr '\\0' '\\n' < /proc/{first[UNITS[0]]}/environ").stdout.count(f"NEWCOMER_TOKEN={SECRET}")

    # RQ has no quiet: a note, exit 0, the workers untouched.
    quiet = run(app, fab, "workers.quiet", "--host", HOST)
    assert quiet.returncode == 0 and f"note: {HOST}: {APP}: quiet not supported by rq" in quiet.stderr, quiet.stderr
    assert pids() == first

    # A changed env file without --restart: the workers still run with the old one, and the output says which.
    env_file.write_text("NEWCOMER_GREETING=bonjour\n")
    up = ok(run(app, fab, "config.upload", "--file", "config/app.env", "--from", env_file))
    assert up.splitlines()[0] == f"{HOST}: {APP}: {DEPLOY_TO}/shared/config/app.env: changed"
    assert f"still running with the old file (their units load it at start): {', '.join(UNITS)}" in up, up
    assert pids() == first and all(greeting(p) == "hello" for p in first.values())
    # --restart (the file is the same now, but its workers are older): restarted, rolling, with the new file.
    up = ok(run(app, fab, "config.upload", "--file", "config/app.env", "--from", env_file, "--restart"))
    assert up.splitlines() == [f"{HOST}: {APP}: {DEPLOY_TO}/shared/config/app.env: unchanged",
                               f"  workers restarted (rolling): {', '.join(UNITS)}"], up
    wait_for(lambda: sorted(pids()) == UNITS, 30, "the restarted workers to be active")
    second = pids()
    assert all(second[u] != first[u] for u in UNITS) and all(greeting(p) == "bonjour" for p in second.values())
    again = ok(run(app, fab, "config.upload", "--file", "config/app.env", "--from", env_file))
    assert "still running with the old file" not in again

    # Removed for good: units, environment files, deploy_to with its lock; `fab run` then says why it cannot.
    ok(run(app, fab, "workers.uninstall", "--purge", "--host", HOST))
    assert ssh(HOST, f"test -e {DEPLOY_TO} || test -e {ENV_DIR} || ls /etc/systemd/system/{APP}-*",
               check=False).returncode != 0
    ran = run(app, fab, "run", "--host", HOST, "--", "true")
    assert ran.returncode == 1 and f"{APP} is not deployed there: {DEPLOY_TO}/current is missing" in ran.stderr, \
        ran.stderr
