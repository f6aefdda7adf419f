"""docs/security.md states the exact sudo rights the deploy user needs: every program deploytool's
command builders run with sudo is in its sudoers block, and nothing more; the block is valid sudoers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from in_ci import required_in_ci

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
# Programs only user mode needs (loginctl enable-linger), documented apart from the system-mode block.
USER_MODE_ONLY = {"loginctl"}

# How builders spell a sudo call: argv lists, and shell text (with the sudo prefix as a variable).
SUDO_CALLS = [
    re.compile(r'"sudo", "-n", "([\w-]+)"'),
    re.compile(r"sudo -n ([\w-]+)"),
    re.compile(r"\{sudo\}([\w-]+)"),
    re.compile(r"\{_sudo\([\w.]+\)\}([\w-]+)"),
]


def _sudo_programs() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "deploytool").rglob("*.py"):
        if "sandbox" in path.parts:  # the local test fleet's own setup, not what deploytool sends
            continue
        text = path.read_text()
        for pattern in SUDO_CALLS:
            found |= set(pattern.findall(text))
    return found


def _sudoers_block() -> str:
    [block] = re.findall(r"```sudoers\n(.*?)```", DOC.read_text(), re.S)
    return block


def test_every_sudo_program_is_in_the_documented_sudoers_and_nothing_else() -> None:
    used = _sudo_programs()
    assert {"systemctl", "tee", "cmp", "install"} <= used  # the scan does find the builders' calls
    documented = set(re.findall(r"/usr/bin/([\w-]+)", _sudoers_block()))
    assert documented == used - USER_MODE_ONLY
    assert "loginctl enable-linger" in DOC.read_text()


@required_in_ci(shutil.which("visudo") is not None, "visudo")
def test_documented_sudoers_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "deploytool"
    path.write_text(_sudoers_block())
    r = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
