"""A local shell's environment in which `systemctl` is a stand-in script (the unit sync tests run the
real sync scripts in user mode against it): its bin directory first on PATH, $HOME a fresh directory,
$STATE the directory of the files the stand-in reads and writes (each made empty here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def fake_systemctl_env(tmp_path: Path, script: str, state_files: tuple[str, ...]) -> dict[str, str]:
    bin_dir, state, home = tmp_path / "bin", tmp_path / "state", tmp_path / "home"
    for d in (bin_dir, state, home):
        d.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(script)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    for name in state_files:
        (state / name).write_text("")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home), "STATE": str(state)}
