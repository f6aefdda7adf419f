"""Every task's --json output is the one envelope (docs/report.md): `task`, `ok`, `dry_run`, `hosts` (one
HostReport per entry), then the task's extras; the keys earlier reports had stay where readers find them."""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from test_jobs_parts import outcome

from deploytool import task_reports
from deploytool.inventory import load_inventory
from deploytool.jobs import formats
from deploytool.report import HostReport, envelope
from deploytool.tasks.inventory import summary

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE = ["task", "ok", "dry_run", "hosts"]
HOST_FIELDS = [f.name for f in fields(HostReport)]

FINDING = {"check": "sudo", "ok": True, "detail": "sudo -n systemctl", "note": False}
RELEASE = {"release": "20260101000000", "revision": "ab" * 20, "current": True}
UNIT = {"host": "h", "unit": "shop-w@1.service", "active": "active"}

# Each report builder: how a task calls it, and (task name, extras, per-host keys at the top level).
CASES: dict[str, tuple[Callable[[], dict[str, Any]], str, list[str], list[str]]] = {
    "config_upload": (lambda: task_reports.config_upload(
        [HostReport("h", "shop", details={"result": "would change"})], "config/app.env", True),
        "config.upload", ["file"], ["result"]),
    "check": (lambda: task_reports.check([HostReport("h", "shop", details={"findings": [FINDING]})]),
              "check", [], ["findings"]),
    "releases": (lambda: task_reports.releases([HostReport("h", "shop", details={"releases": [RELEASE]})]),
                 "releases", [], ["releases"]),
    "workers_status": (lambda: task_reports.workers_status(
        [HostReport("h", "shop", status="failed", error="h: 1 unit(s) not active")], [UNIT]),
        "workers.status", ["units", "errors"], []),
    "jobs_status": (lambda: task_reports.jobs_status(formats.app_reports(outcome(), ["sample"]),
                                                     formats.json_report(outcome())),
                    "jobs.status", ["queues", "errors", "violations"], []),
    "inventory_check": (lambda: task_reports.inventory_check(
        *summary(load_inventory(ROOT / "inventories" / "sandbox.yml")).values()),
        "inventory.check", ["inventory", "inventory_hosts"], []),
}


def test_every_report_builder_is_the_envelope_with_its_extras() -> None:
    builders = {name for name, f in inspect.getmembers(task_reports, inspect.isfunction)
                if f.__module__ == task_reports.__name__ and name != "report"}
    assert builders == set(CASES)
    for name, (build, task, extras, top) in CASES.items():
        data = build()
        assert list(data) == ENVELOPE + extras, name
        assert data["task"] == task and data["ok"] == all(h["status"] == "ok" for h in data["hosts"]), name
        for entry in data["hosts"]:
            assert list(entry) == HOST_FIELDS + top, name
            assert all(entry[k] == entry["details"][k] for k in top), name


def test_the_values_tasks_and_tests_read() -> None:
    upload = CASES["config_upload"][0]()
    assert upload["dry_run"] is True and upload["file"] == "config/app.env"
    assert upload["hosts"][0]["result"] == "would change"
    assert CASES["check"][0]()["hosts"][0]["findings"] == [FINDING]
    assert CASES["releases"][0]()["hosts"][0]["releases"] == [RELEASE]
    status = CASES["workers_status"][0]()
    assert status["ok"] is False and status["units"] == [UNIT] and status["errors"] == ["h: 1 unit(s) not active"]
    inv = CASES["inventory_check"][0]()
    assert inv["ok"] is True and inv["hosts"] == [] and set(inv["inventory_hosts"]) >= {"prod-a", "prod-b"}
    assert inv["inventory_hosts"]["prod-a"]["apps"]["sample"]["deploy_to"] == "/srv/sample"


def test_jobs_status_has_one_entry_per_app_failed_by_an_error_or_a_violation() -> None:
    data = CASES["jobs_status"][0]()
    [entry] = data["hosts"]
    assert (entry["host"], entry["app"], entry["status"]) == ("prod-a", "sample", "failed")
    assert entry["error"] == ("sidekiq: prod-a: timed out; over threshold: sample/rq/high: dead 2 > 1")
    assert entry["details"] == {"systems": ["rq"]}
    assert data["ok"] is False and data["ok"] == outcome().ok
    assert data["queues"] == formats.json_report(outcome())["queues"]
    clean = formats.Outcome(outcome().rows, read=[("sample", "rq")], errors={})
    assert task_reports.jobs_status(formats.app_reports(clean, ["sample"]), formats.json_report(clean))["ok"] is True


def test_reporter_json_is_the_envelope() -> None:
    assert list(envelope([], "deploy", extra={"release": "x"})) == [*ENVELOPE, "release"]


def dumps_outside_task_reports(path: Path) -> list[str]:
    """Functions of a task module that print JSON not built by deploytool.task_reports."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for call in ast.walk(fn):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "dumps"
                    and not (isinstance(arg := call.args[0], ast.Call) and isinstance(arg.func, ast.Attribute)
                             and isinstance(arg.func.value, ast.Name) and arg.func.value.id == "task_reports")):
                found.append(f"{path.name}:{fn.name}")
    return found


def test_every_task_module_prints_json_through_the_envelope() -> None:
    """Reporter.json is the envelope; any other JSON a task prints comes from deploytool.task_reports."""
    pending: set[str] = set()
    modules = sorted((ROOT / "deploytool" / "tasks").glob("*.py"))
    found = {f for path in modules for f in dumps_outside_task_reports(path)}
    assert found == pending


def test_json_reports_redact_strings_never_the_json_itself() -> None:
    from deploytool.report import json_text

    # An environment value that reads like a JSON literal or a number stays a secret in strings and
    # leaves the document valid.
    data = {"ok": False, "count": 2, "hosts": [{"error": "exit 1: token=false s3cr3t-value"}]}
    out = json.loads(json_text(data, ["false", "s3cr3t-value", "2"]))
    assert out["ok"] is False and out["count"] == 2
    assert out["hosts"][0]["error"] == "exit 1: token=*** ***"
