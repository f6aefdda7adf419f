"""Procfiles: parsed as foreman and honcho parse them, each command split into the argv a POSIX shell
would give it (checked against /bin/sh itself), written into units as systemd reads them back, and read
from the repository at the revision a deploy packs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import systemd_parser
import yaml
from in_ci import required_in_ci
from pydantic import ValidationError

from deploytool.engine.plan import Script
from deploytool.errors import HostError
from deploytool.inventory import WorkerGroup, load_inventory
from deploytool.procfile import BASE_PORT, Entry, command, find, parse
from deploytool.procfile_groups import at_revisions
from deploytool.source import resolve
from deploytool.systemd_quote import exec_line
from deploytool.units import exec_start, render_host

REPO = Path(__file__).resolve().parents[2]
FAB = REPO / ".venv" / "bin" / "fab"

PROCFILE = """\
# processes of the shop
web: bundle exec puma -p $PORT -C config/puma.rb

worker: bundle exec sidekiq -C config/sidekiq.yml
  indented: not a process type
clock:python3 clock.py
bad name: ignored
urgent-jobs: rq worker urgent
"""


def test_lines_are_read_as_foreman_and_honcho_read_them() -> None:
    entries = parse(PROCFILE.replace("\n", "\r\n"))
    assert [(e.name, e.command, e.index) for e in entries] == [
        ("web", "bundle exec puma -p $PORT -C config/puma.rb", 0),
        ("worker", "bundle exec sidekiq -C config/sidekiq.yml", 1),
        ("clock", "python3 clock.py", 2),
        ("urgent-jobs", "rq worker urgent", 3),  # honcho's pattern allows `-` (foreman's does not)
    ]
    # foreman's PORT: base port 5000 + 100 * the process type's index (+ the instance's, from 0).
    assert [e.port for e in entries] == [5000, 5100, 5200, 5300]


def test_find_names_what_the_procfile_has_and_refuses_a_type_defined_twice() -> None:
    entries = parse(PROCFILE)
    assert find(entries, "clock").command == "python3 clock.py"
    with pytest.raises(ValueError, match=r"no process type 'jobs' \(it has: web, worker, clock, urgent-jobs\)"):
        find(entries, "jobs")
    with pytest.raises(ValueError, match="defined 2 times"):
        find(parse("a: x\na: y\n"), "a")


def argv(line: str, index: int = 0) -> list[str]:
    return command(Entry("p", line, index)).exec_argv()


def test_commands_become_argv_with_port_replaced() -> None:
    assert argv("bundle exec puma -p $PORT") == ["bundle", "exec", "puma", "-p", str(BASE_PORT)]
    assert argv("gunicorn app:app --bind=0.0.0.0:${PORT}", index=2) == ["gunicorn", "app:app", "--bind=0.0.0.0:5200"]
    assert argv("""python3 -c 'print("a  b")' "two words" a\\ b x'$PORT'y "$PORT" # comment""") == [
        "python3", "-c", 'print("a  b")', "two words", "a b", "x$PORTy", "5000"]
    assert argv("exec bin/work ''") == ["bin/work", ""]
    assert argv("echo cost: $ 5 a#b") == ["echo", "cost:", "$", "5", "a#b"]
    # Leading assignments are the command's environment: `env` sets them and execs the program.
    assert argv("QUEUE=* RAILS_ENV=production bundle exec rake resque:work") == [
        "/usr/bin/env", "QUEUE=*", "RAILS_ENV=production", "bundle", "exec", "rake", "resque:work"]
    assert argv("'A=b' run") == ["A=b", "run"]  # quoted: a program named A=b, as in a shell
    assert command(Entry("p", "x -p $PORT", 0)).uses_port and not command(Entry("p", "x", 0)).uses_port


@pytest.mark.parametrize("line", [
    "bundle exec puma -p $PORT -C config/puma.rb",
    """python3 -c 'print("a  b")' "two words" a\\ b x'$PORT'y "$PORT" "${PORT}x" # comment""",
    """say "it's \\"quoted\\" \\$5 \\\\ \\x" 'back\\slash' ''""",
    "tab\tseparated\t \twords a#b",
])
def test_words_are_the_ones_a_posix_shell_gives(line: str) -> None:
    shell = subprocess.run(["/bin/sh", "-c", f"PORT={BASE_PORT}; set -- {line}\nprintf '%s\\0' \"$@\""],
                           capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert argv(line) == shell


@pytest.mark.parametrize(("line", "why"), [
    ("bin/web | tee log", "`|` needs a shell"),
    ("cd web && bin/run", "`&` needs a shell"),
    ("bin/run > log", "`>` needs a shell"),
    ("bin/run $(cat args)", r"`\$\(` needs a shell"),
    ("bin/run `cat args`", "needs a shell"),
    ('bin/run "$RAILS_ENV"', r"`\$RAILS_ENV` needs a shell to expand it at start; deploytool expands only \$PORT"),
    ("bin/run ${WEB_CONCURRENCY:-2}", r"`\$\{` needs a shell"),
    ("~/bin/run", "`~` needs a shell"),
    ("bin/run 'open", "not closed"),
    ("A=1", "the command is empty"),
    ("bin/run \r", "a control character"),
])
def test_what_only_a_shell_can_do_is_refused_with_the_reason(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        argv(line)


@required_in_ci(systemd_parser.available(), "libsystemd-shared-252")
def test_a_procfile_command_reaches_the_process_as_the_shell_would_give_it() -> None:
    line = """bin/work --name "a b" 'it''s' 100% \\$HOME 'x;y' -p $PORT"""
    words = argv(line, index=1)
    _, seen = systemd_parser.exec_argv(exec_line(words), instance="1", env={"HOME": "/root", "PORT": "1"})
    assert seen == ["bin/work", "--name", "a b", "its", "100%", "$HOME", "x;y", "-p", "5100"]


# --- the inventory key ---------------------------------------------------------------------------


def group(**data: object) -> WorkerGroup:
    return WorkerGroup.model_validate({"name": "g", **data})


def test_a_procfile_group_is_a_command_group_unless_it_says_its_kind() -> None:
    assert group(procfile="worker").kind == "command"
    assert group(procfile="worker", kind="sidekiq", queues=[{"critical": 2}]).kind == "sidekiq"
    with pytest.raises(ValidationError, match="exclude each other"):
        group(procfile="worker", command=["x"])
    for key, value in (("threads", 5), ("config", "config/sidekiq.yml")):
        with pytest.raises(ValidationError, match=f"`{key}` is not added to a Procfile's command"):
            group(procfile="worker", kind="sidekiq", **{key: value})
    with pytest.raises(ValidationError, match="pattern"):
        group(procfile="web: x")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                               "HOME": str(repo), "PATH": "/usr/bin:/bin"}).stdout.strip()


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"Procfile": "web: bin/web -p $PORT\nclock: bin/clock --every 60\njobs: rq worker high default\n"})
    git(repo, "tag", "v1")
    return repo


def inventory(tmp_path: Path, repo: Path, workers: dict[str, object], name: str = "inv.yml") -> Path:
    data = {
        "hosts": {"a": {"address": "192.0.2.1", "roles": ["app"]},
                  "b": {"address": "192.0.2.2", "roles": ["app"],
                        "apps": {"shop": {"workers": {"jobs": {"processes": 3}}}}}},
        "apps": {"shop": {"source": {"repository": str(repo), "revision": "main"}, "deploy_to": "/srv/shop",
                          "redis": "redis://192.0.2.9/0", "workers": workers}},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


WORKERS = {"web": {"procfile": "web"}, "clock": {"procfile": "clock", "processes": 2},
           "jobs": {"procfile": "jobs", "kind": "rq"}}


def test_groups_get_the_procfile_command_at_the_revision_with_its_queues(app_repo: Path, tmp_path: Path) -> None:
    inv = at_revisions(load_inventory(inventory(tmp_path, app_repo, WORKERS)))
    shop = inv.apps_on("b")["shop"]
    assert shop.workers["web"].command == ("bin/web", "-p", "5000")
    assert shop.workers["clock"].command == ("bin/clock", "--every", "60")
    jobs = shop.workers["jobs"]
    assert (jobs.command, [q.name for q in jobs.queues], jobs.processes) == (("rq", "worker", "high", "default"),
                                                                              ["high", "default"], 3)
    # The line is the whole command: no `worker` subcommand nor queue flags added to it.
    assert [str(a) for a in exec_start(shop, jobs, "b")] == ["rq", "worker", "high", "default"]
    units = {u.name: u.content for u in render_host(inv, "a")}
    assert "ExecStart=/srv/shop/current/bin/clock --every 60\n" in units["shop-clock@.service"]

    # Another revision, another command: what a deploy of --revision v1 reads.
    commit(app_repo, {"Procfile": "web: bin/web -p $PORT\nclock: bin/clock --every 5\njobs: rq worker low\n"})
    later = at_revisions(load_inventory(inventory(tmp_path, app_repo, WORKERS)))
    assert later.apps_on("a")["shop"].workers["clock"].command == ("bin/clock", "--every", "5")
    plain = load_inventory(inventory(tmp_path, app_repo, WORKERS))
    v1 = at_revisions(plain, {"shop": resolve(plain.apps_on("a")["shop"], "v1")})
    assert v1.apps_on("a")["shop"].workers["clock"].command == ("bin/clock", "--every", "60")


def fab(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FAB), "-r", str(REPO), *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=60)


@pytest.mark.parametrize(("change", "message"), [
    ({"web": {"procfile": "www"}}, r"apps\.shop\.workers\.web\.procfile: Procfile at main \([0-9a-f]{12}\): "
                                   r"no process type 'www' \(it has: web, clock, jobs\)$"),
    ({"web": {"procfile": "web", "processes": 2}},
     r"apps\.shop\.workers\.web\.procfile: .*'web' listens on \$PORT, .* with processes: 2 every instance"),
])
def test_a_procfile_without_the_type_is_bad_input_naming_file_app_group_and_key(
    app_repo: Path, tmp_path: Path, change: dict[str, object], message: str,
) -> None:
    path = inventory(tmp_path, app_repo, {**WORKERS, **change})
    r = fab(tmp_path, "inventory.check", "--inventory", str(path))
    assert r.returncode == 2 and r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {path}: apps.shop.workers.") and re.search(message, line), line


def test_a_revision_without_a_procfile_is_bad_input_and_nothing_is_rendered(app_repo: Path, tmp_path: Path) -> None:
    git(app_repo, "rm", "-q", "Procfile")
    git(app_repo, "commit", "-q", "-m", "no Procfile")
    path = inventory(tmp_path, app_repo, WORKERS)
    r = fab(tmp_path, "workers.render", "--inventory", str(path), "--host", "a", "--out", str(tmp_path / "units"))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {path}: apps.shop.workers.web.procfile: no Procfile at main "
                                     f"({git(app_repo, 'rev-parse', 'HEAD')[:12]})"]
    assert not (tmp_path / "units").exists()
    # The revision deployed decides: v1 still has its Procfile.
    plain = load_inventory(path)
    v1 = at_revisions(plain, {"shop": resolve(plain.apps_on("a")["shop"], "v1")})
    assert v1.apps_on("a")["shop"].workers["web"].command == ("bin/web", "-p", "5000")


def test_a_failed_deploy_and_a_rollback_put_back_the_units_of_the_release_they_return_to(
    app_repo: Path, tmp_path: Path,
) -> None:
    from deploytool.engine.lock import Holder
    from deploytool.operations.deploy import Deploy
    from deploytool.operations.releases import rollback_plan
    from deploytool.operations.workers import Workers

    v1 = git(app_repo, "rev-parse", "v1")
    commit(app_repo, {"Procfile": "web: bin/web -p $PORT\nclock: bin/clock --every 5\njobs: rq worker low\n"})
    inv = at_revisions(load_inventory(inventory(tmp_path, app_repo, WORKERS)))
    app = inv.apps_on("a")["shop"]
    deploy = Deploy(inv, "a", app, resolve(app, None), "20260102000000", None, ())
    holder = Holder.me("c0ffee", "20260102000000")

    def clock(w: Workers) -> list[str]:
        unit = w.rendered(())["shop-clock@.service"]
        return [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]

    facts = {"previous": "20260101000000", "previous_revision": v1}
    plan = deploy.build_plan(facts, holder)
    [installed] = [s.command for a in plan.actions if isinstance(a, Script) for s in a.steps if s.stage == "units"]
    [put_back] = [r.command for r in plan.recovery if r.name == "units"]
    assert clock(deploy.workers) == ["ExecStart=/srv/shop/current/bin/clock --every 5"]
    assert installed == deploy.workers.install_script(())
    previous = deploy.previous_workers(facts, deploy.workers)
    assert clock(previous) == ["ExecStart=/srv/shop/current/bin/clock --every 60"]
    assert put_back == previous.install_script(()) != installed
    # A release whose revision this repository does not have: refused before anything changes.
    with pytest.raises(HostError, match="its units could not be put back"):
        deploy.build_plan({"previous": "20260101000000", "previous_revision": "f" * 40}, holder)

    listing = f"20260102000000 {git(app_repo, 'rev-parse', 'HEAD')}\n20260101000000 {v1}\ncurrent 20260102000000\n"
    back = rollback_plan(inv, "a", app, None, (), {"output:check": listing}, holder)
    [switched] = [s.command for a in back.actions if isinstance(a, Script) for s in a.steps if s.stage == "units"]
    assert switched == put_back
