"""`fab config.upload` as a plan: its stages and commands, and the plan run by the one executor in a
real local shell against a temporary shared/ (an SFTP upload stood in for by a local copy)."""

from __future__ import annotations

import getpass
import io
import shutil
from pathlib import Path

import pytest
from local_shell import LocalShell

from deploytool.commands import config as cmd
from deploytool.commands.config import SharedFile
from deploytool.engine.execute import Execution
from deploytool.engine.plan import Script, Upload, describe
from deploytool.engine.runner import plan_data
from deploytool.errors import HostError
from deploytool.inventory import App
from deploytool.operations import shared_files
from deploytool.operations.shared_files import Content
from deploytool.report import HostReport, Reporter
from deploytool.tasks.config import plan_lines

SECRET = b"TOKEN=very-secret-value\n"


def local_host(broken_upload: bool = False) -> LocalShell:
    """The host's session on this machine: uploads copy the file (or, broken, leave part of it)."""
    def upload(local: Path, remote: str, stage: str) -> None:
        if broken_upload:  # the connection dropped halfway: part of the file is there
            Path(remote).write_bytes(local.read_bytes()[:5])
            raise HostError(f"h: {stage}: upload to {remote}: timed out")
        shutil.copyfile(local, remote)

    return LocalShell(upload=upload)


pytestmark = pytest.mark.usefixtures("not_cancelled")


@pytest.fixture
def env_file(tmp_path: Path) -> SharedFile:
    app = App.model_validate({"name": "shop", "source": {"repository": "/nonexistent"},
                              "deploy_to": str(tmp_path / "shop"), "linked_files": ["config/app.env"]})
    return SharedFile(app, "config/app.env", getpass.getuser())


@pytest.fixture
def content(tmp_path: Path) -> Content:
    source = tmp_path / "app.env"
    source.write_bytes(SECRET)
    return Content.of(source)


def upload(f: SharedFile, content: Content, host: LocalShell) -> tuple[bool, HostReport, str]:
    report = HostReport("h", "shop")
    ex = Execution(host, "h", report, Reporter(out=io.StringIO()))
    ok = ex.run(lambda facts: shared_files.upload_plan(f, content, facts))
    return ok, report, shared_files.outcome(f, content, ex.facts, dry_run=False) if ok else ""


def test_the_plan_compares_prepares_uploads_installs_and_removes_the_temporary_file_on_failure(
        env_file: SharedFile, content: Content) -> None:
    plan = shared_files.upload_plan(env_file, None, {}, what="the file")
    temp = cmd.temp_template(env_file)
    assert temp == f"{env_file.directory}/.app.env.deploytool.XXXXXXXX"
    assert describe(plan) == [
        ("compare", [cmd.state(env_file)]),
        ("prepare", [f"mkdir -p -- {env_file.directory} && mktemp -- {temp}"]),
        ("upload", [f"upload the file -> {temp}"]),
        ("install", [f"chmod 600 -- {temp}", f"mv -f -- {temp} {env_file.path}"]),
    ]
    [up] = [a for a in plan.actions if isinstance(a, Upload)]
    assert up.arms == ("remove the temporary file",) and up.local is None
    assert [(r.name, r.command) for r in plan.recovery] == [
        ("remove the temporary file", f"rm -f -- {temp} {temp}.owned")]
    assert isinstance(plan.actions[-1], Script) and plan.actions[-1].commits
    # The host's answer to mktemp replaces the template.
    made = shared_files.upload_plan(env_file, content, {"output:prepare": "/x/.app.env.deploytool.ab12"})
    assert [a.remote for a in made.actions if isinstance(a, Upload)] == ["/x/.app.env.deploytool.ab12"]
    assert made.recovery[0].command == "rm -f -- /x/.app.env.deploytool.ab12 /x/.app.env.deploytool.ab12.owned"


def test_changed_then_unchanged_then_a_wrong_mode_is_put_right(env_file: SharedFile, content: Content) -> None:
    path = Path(env_file.path)
    host = local_host()
    ok, report, result = upload(env_file, content, host)
    assert ok and result == shared_files.CHANGED, report
    assert path.read_bytes() == SECRET and oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["app.env"]  # no temporary file left
    assert [s.name for s in report.stages] == ["compare", "prepare", "upload", "install"]
    assert all(SECRET.decode().strip() not in s for s in host.scripts)

    again = local_host()
    ok, report, result = upload(env_file, content, again)
    assert ok and result == shared_files.UNCHANGED and [s.name for s in report.stages] == ["compare"]
    assert len(again.scripts) == 1 and not again.uploads

    path.chmod(0o644)
    ok, _, result = upload(env_file, content, local_host())
    assert ok and result == shared_files.CHANGED and oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_broken_upload_leaves_the_old_file_and_no_temporary_file(env_file: SharedFile, content: Content) -> None:
    path = Path(env_file.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"OLD=1\n")
    ok, report, _ = upload(env_file, content, local_host(broken_upload=True))
    assert not ok and report.status == "failed" and "timed out" in (report.error or "")
    assert path.read_bytes() == b"OLD=1\n"
    assert [p.name for p in path.parent.iterdir()] == ["app.env"]
    assert ("recover:remove the temporary file", "ok") in [(s.name, s.status) for s in report.stages]


def test_a_dry_run_only_compares_and_prints_the_plan_without_the_content(
        env_file: SharedFile, content: Content) -> None:
    host = local_host()
    report = HostReport("h", "shop")
    ex = Execution(host, "h", report, Reporter(out=io.StringIO()))
    assert ex.run(lambda facts: shared_files.compare_plan(env_file))
    assert shared_files.outcome(env_file, content, ex.facts, dry_run=True) == shared_files.WOULD_CHANGE
    assert len(host.scripts) == 1 and not host.uploads and not Path(env_file.directory).exists()

    lines = plan_lines({"h": env_file}, "-")
    assert lines[1] == f"h: shop: {env_file.path}"
    assert "  [upload]" in lines and f"    upload standard input -> {cmd.temp_template(env_file)}" in lines
    assert lines[-1] == "  [on failure] remove the temporary file"
    assert plan_lines({"h": env_file}, "-", verbose=False)[1:] == [
        f"h: shop: {env_file.path}", "  stages: compare, prepare, upload, install  (--verbose: their commands)",
        "  [on failure] remove the temporary file"]
    assert SECRET.decode().strip() not in "\n".join(lines)
    # The JSON report's details in a dry run: the same plan as data.
    data = plan_data(shared_files.upload_plan(env_file, None, {}, what="standard input"))
    assert [s["stage"] for s in data["plan"]] == ["compare", "prepare", "upload", "install"]
    assert data["plan"][2]["commands"] == [f"upload standard input -> {cmd.temp_template(env_file)}"]
    assert data["on_failure"] == ["remove the temporary file"]
