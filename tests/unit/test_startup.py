"""`fab --list` and the start of every task load only the task collection: the inventory model
(pydantic), unit rendering (jinja2) and the worker machinery are imported by the task bodies."""

from __future__ import annotations

import subprocess
import sys


def test_task_collection_imports_no_heavy_machinery() -> None:
    code = ("import sys, deploytool.tasks; "
            "print(' '.join(m for m in ('pydantic', 'jinja2', 'deploytool.inventory', 'deploytool.units', "
            "'deploytool.jobs', 'deploytool.operations.workers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""
