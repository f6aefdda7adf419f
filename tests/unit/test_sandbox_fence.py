"""The sandbox tasks (which remove this machine's sandbox hosts) are deploytool's own: an app's fabfile, as
`deploytool init` writes it, does not list them; this repository's fabfile does."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAB = str(ROOT / ".venv" / "bin" / "fab")


def listed(project: Path) -> str:
    r = subprocess.run([FAB, "--list"], cwd=project, capture_output=True, text=True, check=True, timeout=60)
    return r.stdout


def test_an_apps_fabfile_has_no_sandbox_tasks(tmp_path: Path) -> None:
    (tmp_path / "fabfile.py").write_text((ROOT / "deploytool" / "scaffold" / "fabfile.py").read_text())
    tasks = listed(tmp_path)
    assert "deploy" in tasks and "workers.restart" in tasks and "sandbox" not in tasks


def test_deploytools_own_fabfile_keeps_them() -> None:
    tasks = listed(ROOT)
    assert all(f"sandbox.{t}" in tasks for t in ("up", "down", "reboot"))
