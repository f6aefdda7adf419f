"""jobs.status without hosts: probe output parsing, expected workers, thresholds and their state file,
the three output formats, and which workers and queues belong to another app."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from deploytool.commands import running
from deploytool.errors import InputError
from deploytool.inventory import load_inventory
from deploytool.jobs import collect, expected, formats, ownership, probe, thresholds
from deploytool.jobs.model import QueueCounts, QueueStatus, Reading, SeenWorker
from deploytool.jobs.systems import SYSTEMS
from deploytool.operations.workers import UnitStatus, _with_process

INV = load_inventory("sandbox")

SIDEKIQ_OUTPUT = {
    "system": "sidekiq", "hostname": "prod-a", "time": 1.0,
    "queues": [{"name": "critical", "queued": 0, "latency": 0.0, "scheduled": 0, "retrying": 0, "dead": 0,
                "running": 0},
               {"name": "default", "queued": 7, "latency": 120.5, "scheduled": 2, "retrying": 3, "dead": 1,
                "running": 4}],
    "other_queues": [{"name": "mailers", "queued": 5}, {"name": "empty", "queued": 0}],
    "workers": [
        {"name": "prod-a:1:abc", "hostname": "prod-a", "pid": 101, "tag": "sample-sidekiq-1",
         "queues": ["critical", "default"], "concurrency": 5, "busy": 2, "quiet": False,
         "unit": "sample-sidekiq@1.service"},
        {"name": "prod-b:7:def", "hostname": "prod-b", "pid": 7, "tag": "sample-sidekiq-1",
         "queues": ["critical", "default"], "concurrency": 3, "busy": 0, "quiet": True, "unit": None},
        {"name": "prod-a:9:xyz", "hostname": "prod-a", "pid": 9, "tag": "shop-jobs-1",
         "queues": ["default"], "concurrency": 10, "busy": 0, "quiet": False, "unit": "shop-jobs@1.service"},
    ],
}


def sidekiq_reading(**changes: object) -> Reading:
    return probe.parse("prod-a", "a gem's warning\n" + json.dumps({**SIDEKIQ_OUTPUT, **changes}) + "\n")


def test_probe_output_becomes_a_reading() -> None:
    r = sidekiq_reading()
    assert (r.system, r.host, r.hostname) == ("sidekiq", "prod-a", "prod-a")
    assert r.queues[1] == QueueCounts("default", queued=7, latency=120.5, running=4, scheduled=2, retrying=3,
                                      dead=1)
    assert r.other_queues == (("mailers", 5), ("empty", 0))
    assert r.workers[1].unit is None and r.workers[1].quiet is True


@pytest.mark.parametrize("stdout", ["", "Traceback (most recent call last):\n", '{"system": "rq"}'])
def test_unreadable_probe_output_is_an_error(stdout: str) -> None:
    with pytest.raises(probe.ProbeOutputError, match="unreadable probe output"):
        probe.parse("prod-a", stdout)


def test_expected_workers_are_processes_times_threads_per_host() -> None:
    # prod-a: 3 processes x 5 threads, prod-b: 2 x 3; RQ: 2 processes of one job each per host.
    assert expected.workers(INV, "sample", "sidekiq") == {"critical": 21, "default": 21}
    assert expected.workers(INV, "sample", "rq") == {"high": 4, "default": 4}
    # Celery: processes x concurrency; Dramatiq: the broker sees one consumer per process.
    assert expected.workers(INV, "sample", "celery") == {"celery-redis": 4, "celery-rabbit": 4}
    assert expected.workers(INV, "sample", "dramatiq") == {"dramatiq": 2}
    assert expected.systems_of(INV, "sample") == ["sidekiq", "rq", "celery", "dramatiq"]


def test_each_celery_app_is_read_on_its_own() -> None:
    # Two Celery apps of one app may use two brokers: one probe each, with its own -A.
    found = {(s.system, s.args): (s.queues, {h for h, _ in s.groups}) for s in expected.sources(INV, "sample")}
    assert found == {
        ("sidekiq", ()): (["critical", "default"], {"prod-a", "prod-b"}),
        ("rq", ()): (["high", "default"], {"prod-a", "prod-b"}),
        ("celery", ("celery_redis",)): (["celery-redis"], {"prod-a", "prod-b"}),
        ("celery", ("celery_rabbit",)): (["celery-rabbit"], {"prod-a", "prod-b"}),
        ("dramatiq", ("dramatiq_app",)): (["dramatiq"], {"prod-a", "prod-b"}),
    }


def test_rows_count_live_workers_and_quiet_ones_per_queue() -> None:
    [critical, default] = collect.rows_of(INV, "sample", sidekiq_reading())
    assert (critical.workers, critical.workers_expected, critical.quiet) == (8, 21, 1)
    assert (default.workers, default.quiet, default.key) == (18, 1, "sample/sidekiq/default")


def test_probe_command_runs_the_workers_interpreter_in_the_release_with_their_environment() -> None:
    app = INV.apps_on("prod-a")["sample"]
    text = probe.command(app, app.workers["sidekiq"], SYSTEMS["sidekiq"], ["critical", "default"])
    # In the release the group's running workers work in (deploytool.commands.running), else current.
    assert text.startswith(running.release_of(app, app.workers["sidekiq"]) + "\n")
    assert '\ncd "$release" 2>/dev/null || cd /srv/sample/current 2>/dev/null || cd\n' in text
    assert "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" in text  # the units'
    assert "command -v sidekiq" in text and "export REDIS_URL=redis://10.213.0.21:6379/0" in text
    assert "/srv/sample/shared/config/app.env" in text
    assert "sh -c " in text and " sh critical default <<'DEPLOYTOOL_PROBE_END'\n" in text
    assert text.endswith("puts JSON.generate(report)\n\nDEPLOYTOOL_PROBE_END")


@pytest.mark.parametrize("shebang", ["#!/usr/bin/python3", "#! /usr/bin/env python3", "#!/bin/sh"])
def test_launcher_runs_the_probe_with_the_programs_interpreter(tmp_path: Path, shebang: str) -> None:
    # A worker program whose shebang names its Python (a venv's, through env, or a shell wrapper like
    # Debian's /usr/bin/celery, where the language's own interpreter is taken instead).
    program = tmp_path / "celery"
    program.write_text(f"{shebang}\n")
    program.chmod(0o755)
    script = probe.launcher(SYSTEMS["celery"], "celery", "prod-a")
    r = subprocess.run(["sh", "-c", script, "sh", "app", "q 1"], input="import os, sys\n"
                       "print(sys.argv[1:], os.environ['DEPLOYTOOL_HOST'])\n", capture_output=True, text=True,
                       env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=False)
    assert (r.returncode, r.stdout) == (0, "['app', 'q 1'] prod-a\n"), r.stderr


def test_probe_command_is_valid_shell() -> None:
    app = INV.apps_on("prod-b")["sample"]
    for kind in ("sidekiq", "rq"):
        text = probe.command(app, app.workers[kind], SYSTEMS[kind], ["a b", "it's"])
        assert subprocess.run(["sh", "-n", "-c", text], check=False).returncode == 0


def status(queue: str = "default", dead: int = 0, latency: float = 0.0) -> QueueStatus:
    counts = QueueCounts(queue, queued=3, latency=latency, running=1, scheduled=0, retrying=None, dead=dead)
    return QueueStatus("sample", "rq", "prod-a", counts, workers=2, workers_expected=4, quiet=0)


def test_thresholds_each_trip_only_above_their_limit() -> None:
    rows = [status("high", dead=2, latency=30.0), status("default", dead=5)]
    limits = thresholds.Thresholds(max_latency=30, max_dead=4, max_failed_increase=1)
    found = thresholds.check(rows, limits, {"sample/rq/high": 1, "sample/rq/default": 2})
    assert [str(v) for v in found] == ["sample/rq/default: dead 5 > 4", "sample/rq/default: failed increase 2 > 1"]
    assert thresholds.check(rows, thresholds.Thresholds(), {"sample/rq/default": 9}) == []
    assert str(thresholds.check(rows, thresholds.Thresholds(max_latency=29.5), {})[0]) == \
        "sample/rq/high: latency 30s > 29.5s"


def test_negative_threshold_is_bad_input() -> None:
    with pytest.raises(InputError, match=r"^--max-dead: must not be negative"):
        thresholds.Thresholds(max_dead=-1)


def test_failed_increase_against_the_state_of_the_last_run(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jobs.json"
    assert thresholds.load_state(path) == {}  # first run: nothing to compare with
    thresholds.save_state(path, [status("high", dead=2), status("default", dead=5)], {"other/rq/x": 1})
    previous = thresholds.load_state(path)
    assert previous == {"sample/rq/high": 2, "sample/rq/default": 5, "other/rq/x": 1}
    # A queue new since the last run has no increase yet; one whose dead jobs were deleted has none.
    rows = [status("high", dead=5), status("default", dead=1), status("new", dead=3)]
    assert thresholds.increases(rows, previous) == {"sample/rq/high": 3, "sample/rq/default": 0}


def test_broken_state_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=f"^{path}: not a deploytool jobs state file"):
        thresholds.load_state(path)


def outcome() -> formats.Outcome:
    rows = [status("high", dead=2, latency=12.25), status('we"ird', dead=0)]
    return formats.Outcome(rows, read=[("sample", "rq")], errors={("sample", "sidekiq"): "prod-a: timed out"},
                           increase={"sample/rq/high": 1},
                           violations=[thresholds.Violation("sample/rq/high", "dead", 2, 1)])


def test_table_shows_counts_workers_errors_and_violations() -> None:
    lines = formats.table(outcome()).splitlines()
    assert lines[0].split() == ["APP", "SYSTEM", "QUEUE", "QUEUED", "LATENCY", "RUNNING", "RETRY", "SCHED",
                                "DEAD", "NEW", "WORKERS", "READ", "ON"]
    assert lines[1].split() == ["sample", "rq", "high", "3", "12.2s", "1", "-", "0", "2", "1", "2/4", "prod-a"]
    assert lines[-2:] == ["error: sample: sidekiq: prod-a: timed out", "over threshold: sample/rq/high: dead 2 > 1"]


def test_json_report() -> None:
    data = formats.json_report(outcome())
    assert data["ok"] is False
    assert data["queues"][0] == {
        "app": "sample", "system": "rq", "queue": "high", "read_on": "prod-a", "queued": 3, "latency": 12.25,
        "running": 1, "scheduled": 0, "retrying": None, "dead": 2, "deferred": None, "reserved": None,
        "consumers": None, "failed_recently": None, "failed_increase": 1,
        "workers": 2, "workers_expected": 4, "workers_quiet": 0,
    }
    assert data["errors"] == [{"app": "sample", "system": "sidekiq", "error": "prod-a: timed out"}]
    assert data["violations"][0]["message"] == "sample/rq/high: dead 2 > 1"


def test_prometheus_textfile() -> None:
    text = formats.prometheus(outcome())
    lines = text.splitlines()
    assert text.endswith("\n")
    i = lines.index("# TYPE deploytool_jobs_dead gauge")
    assert lines[i - 1].startswith("# HELP deploytool_jobs_dead ")
    assert lines[i + 1] == 'deploytool_jobs_dead{app="sample",queue="high",system="rq"} 2'
    assert 'deploytool_jobs_queued{app="sample",queue="we\\"ird",system="rq"} 3' in lines
    assert 'deploytool_jobs_failed_increase{app="sample",queue="high",system="rq"} 1' in lines
    # Values a system does not keep are left out, not reported as 0.
    assert not any(line.startswith("deploytool_jobs_retrying") for line in lines)
    assert 'deploytool_jobs_up{app="sample",system="sidekiq"} 0' in lines
    assert lines[-1] == "deploytool_jobs_over_threshold 1"


def test_other_apps_workers_and_queues_are_foreign() -> None:
    found = ownership.foreign(INV, "sample", sidekiq_reading())
    # Its own process on this host (by unit) and on prod-b (by tag) are the app's; shop's is not, nor is
    # a queue with jobs that no group of the app works (an empty one is left alone).
    assert found == ["sidekiq worker shop-jobs-1 (shop-jobs@1.service on prod-a, queues default)",
                     "sidekiq queue mailers (5 jobs)"]


def test_rq_workers_are_told_apart_by_unit_here_and_by_queues_elsewhere() -> None:
    def rq(unit: str | None, queues: tuple[str, ...]) -> SeenWorker:
        return SeenWorker("w", "prod-b", 5, "", queues, 1, 0, False, unit)

    assert ownership.is_ours(INV, "sample", "rq", rq("sample-rq@2.service", ("high",)))
    assert not ownership.is_ours(INV, "sample", "rq", rq("shop-rq@1.service", ("high",)))
    assert not ownership.is_ours(INV, "sample", "rq", rq("sample-sidekiq@1.service", ("high",)))
    assert ownership.is_ours(INV, "sample", "rq", rq(None, ("high", "default")))
    assert not ownership.is_ours(INV, "sample", "rq", rq(None, ("high", "mail")))


def test_a_shared_db_refuses_only_other_workers_on_this_apps_queues() -> None:
    reading = sidekiq_reading(workers=[*SIDEKIQ_OUTPUT["workers"],  # type: ignore[misc]
                                       {"name": "x", "hostname": "web-1", "tag": "shop-mail-1", "queues": ["mail"],
                                        "concurrency": 5}])
    assert ownership.foreign(INV, "sample", reading, shared=True) == [
        "sidekiq worker shop-jobs-1 (shop-jobs@1.service on prod-a, queues default)"]


def test_workers_status_matches_a_unit_to_its_process() -> None:
    def unit(name: str, pid: int) -> UnitStatus:
        return UnitStatus("prod-a", name, "loaded", "active", "running", "enabled", "", 0, pid, None)

    readings = [sidekiq_reading()]
    assert _with_process(unit("sample-sidekiq@1.service", 101), readings).quiet is False
    assert _with_process(unit("sample-sidekiq@1.service", 101), readings).busy == 2
    # prod-b's process has the same tag, but is not on this host; nothing records instance 2.
    assert _with_process(unit("sample-sidekiq@2.service", 102), readings).busy is None
    assert _with_process(unit("sample-workers.target", 0), readings).quiet is None
    # Seen from prod-b (its hostname), the tag finds the process when its unit is unknown.
    from_b = probe.parse("prod-b", json.dumps({**SIDEKIQ_OUTPUT, "hostname": "prod-b"}))
    assert _with_process(unit("sample-sidekiq@1.service", 7), [from_b]).quiet is True


def test_probe_arguments_come_from_the_workers_command() -> None:
    assert SYSTEMS["celery"].probe_args(["celery", "-A", "celery_redis", "worker"]) == ["celery_redis"]
    assert SYSTEMS["celery"].probe_args(["celery", "--app=proj.celery:app"]) == ["proj.celery:app"]
    assert SYSTEMS["dramatiq"].probe_args(["/venv/bin/dramatiq", "-v", "app.tasks:broker"]) == ["app.tasks"]
    assert SYSTEMS["rq"].probe_args(["rq", "worker"]) == []


def test_broker_consumers_count_processes_and_unknown_workers_stay_unknown() -> None:
    data = {"system": "dramatiq", "hostname": "prod-a", "workers": None,
            "queues": [{"name": "dramatiq", "queued": 2, "latency": None, "running": None, "scheduled": 1,
                        "dead": 0, "consumers": 2}, {"name": "other", "queued": 0}]}
    reading = probe.parse("prod-a", json.dumps(data))
    assert not reading.workers_known
    inv = load_inventory(Path(__file__).parent / "inventories" / "basic.yml")
    [with_consumers, without] = collect.rows_of(inv, "shop", reading)
    assert (with_consumers.workers, without.workers) == (2, None)
    line = formats.table(formats.Outcome([without], [("shop", "dramatiq")], {})).splitlines()[1]
    assert line.split()[-2:] == ["-/0", "prod-a"] and line.split()[4] == "-"


def test_the_redis_check_covers_kinds_without_a_key_prefix_only() -> None:
    assert [g.name for g in ownership.checked_groups(INV, "prod-a", INV.apps_on("prod-a")["sample"])] == [
        "sidekiq", "rq"]
    basic = load_inventory(Path(__file__).parent / "inventories" / "basic.yml")
    # shop's Sidekiq group is checked, its Celery group (prefixed by redis_namespace) is not.
    assert [g.name for g in ownership.checked_groups(basic, "worker-1", basic.apps_on("worker-1")["shop"])] == [
        "jobs"]
    assert ownership.checked_groups(basic, "worker-1", basic.apps_on("worker-1")["stats"]) == []


def test_the_redis_check_reads_each_apps_db_once_through_its_first_selected_host() -> None:
    sample = INV.apps_on("prod-a")["sample"]
    both = [("prod-b", sample), ("prod-a", sample)]
    # The hosts the app's DB is read through, in inventory order whatever the order of --host: the
    # first that answers reads it for the whole app (one probe per system), the DB being the app's.
    where = ownership.candidates(INV, both)
    assert {a: [(h, [g.name for g in gs]) for h, gs in hosts] for a, hosts in where.items()} == {
        "sample": [("prod-a", ["sidekiq", "rq"]), ("prod-b", ["sidekiq", "rq"])]}
    assert [h for h, _ in ownership.candidates(INV, [("prod-b", sample)])["sample"]] == ["prod-b"]
    basic = load_inventory(Path(__file__).parent / "inventories" / "basic.yml")
    assert ownership.candidates(basic, [("worker-1", basic.apps_on("worker-1")["stats"])]) == {}


def test_probes_side_by_side_in_a_real_shell() -> None:
    # Three stand-ins for probes: one prints a reading after a library's warning, one fails, one prints junk.
    good = json.dumps({**SIDEKIQ_OUTPUT, "system": "rq"})
    commands = [f"echo 'a warning' >&2; echo {good!r}", "echo 'Redis refused' >&2; exit 3", "echo not-json"]
    out = subprocess.run(["sh", "-c", collect.side_by_side(commands)], capture_output=True, text=True,
                         check=True).stdout
    reading, failed, junk = collect.split_side_by_side("prod-a", out, 3)
    assert isinstance(reading, Reading) and reading.system == "rq" and len(reading.queues) == 2
    assert failed == "prod-a: exit 3: Redis refused"
    assert junk == "prod-a: unreadable probe output (JSONDecodeError): not-json"
    assert collect.split_side_by_side("prod-a", "", 1) == ["prod-a: no output from the probe"]


def test_python_probes_carry_their_shared_code_once() -> None:
    from deploytool.jobs.systems import SYSTEMS

    for system in SYSTEMS.values():
        source = system.source()
        if system.language == "python3":
            compile(source, system.probe, "exec")  # one program, as the host's interpreter reads it
        uses = "unit_of(" in source.replace("def unit_of(", "")
        assert source.count("def unit_of(") == (1 if uses else 0), system.name
    # The shared function, run here: this process's unit from its cgroup, or None outside systemd.
    scope: dict[str, object] = {}
    exec(SYSTEMS["rq"].source().split("import json", 1)[0], scope)
    unit_of = scope["unit_of"]
    assert callable(unit_of)
    found = unit_of(os.getpid())
    assert found is None or found.endswith(".service")
    assert unit_of(None) is None
