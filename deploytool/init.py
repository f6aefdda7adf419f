"""`deploytool init`: the files an app's repository needs to deploy with deploytool.

The files come from deploytool/scaffold/ (package data). Nothing is overwritten unless asked: an
existing file is the user's, so init refuses (exit 2) and names every file in the way, writing none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deploytool.errors import InputError

# Where each scaffold file goes in the project.
FILES = {
    "fabfile.py": "fabfile.py",
    "fabric.yaml": "fabric.yaml",
    "inventories/production.yml": "production.yml",
    ".github/workflows/deploy.yml": "deploy.yml",
}
# Stands for the app's name in the scaffold (the example inventory names its app, units and deploy_to).
APP_PLACEHOLDER = "__app__"


@dataclass(frozen=True)
class Written:
    path: Path
    replaced: bool  # it existed and --force replaced it


def app_name(project: Path) -> str:
    """The project directory's name as an app name: letters, digits, `_`, `.` and `-` (unit names)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", project.resolve().name.lower()).strip("-._")[:40]
    return name or "app"


def scaffold(relative: str, app: str) -> str:
    text = (resources.files("deploytool") / "scaffold" / FILES[relative]).read_text()
    return text.replace(APP_PLACEHOLDER, app)


def init(project: Path, force: bool = False) -> list[Written]:
    """Write the scaffold into `project`; InputError naming all existing files unless `force`."""
    app = app_name(project)
    targets = {relative: project / relative for relative in FILES}
    existing = [relative for relative, path in targets.items() if path.exists() or path.is_symlink()]
    if existing and not force:
        raise InputError(f"{project.resolve()}: would overwrite {', '.join(existing)} "
                         "(nothing written; --force replaces them)")
    written = []
    for relative, path in targets.items():
        text = scaffold(relative, app)  # read everything first: a broken install fails before any write
        path.parent.mkdir(parents=True, exist_ok=True)
        replaced = relative in existing
        if path.is_symlink():
            path.unlink()  # replace the link itself, never write through it
        path.write_text(text)
        written.append(Written(path, replaced))
    return written
