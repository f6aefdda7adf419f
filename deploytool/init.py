"""`deploytool init`: the files an app's repository needs to deploy with deploytool.

The files come from deploytool/scaffold/ (package data). Nothing is overwritten unless asked: an
existing file is the user's, so init refuses (exit 2) and names every file in the way, writing none.
The inventory's worker groups are what the repository says the app runs (deploytool.detect), each
with a comment saying what it was read from; `.venv/` is added to `.gitignore` when there is a `.venv`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from deploytool import detect
from deploytool.errors import InputError
from deploytool.kinds import Queue

# Where each scaffold file goes in the project.
FILES = {
    "fabfile.py": "fabfile.py",
    "fabric.yaml": "fabric.yaml",
    "inventories/production.yml": "production.yml",
    ".github/workflows/deploy.yml": "deploy.yml",
}
# Stands for the app's name in the scaffold (the example inventory names its app, units and deploy_to).
APP_PLACEHOLDER = "__app__"
# Where the production inventory's worker groups and one host's override of them go.
WORKERS_PLACEHOLDER = "__workers__"
OVERRIDES_PLACEHOLDER = "__host_overrides__"
# The files detection reads, relative to the project (globs).
READ = ("Procfile", "config/sidekiq*.yml", "Gemfile.lock", "requirements*.txt", "pyproject.toml")
COMMENT_AT = 38  # the column the scaffold's comments start at


@dataclass(frozen=True)
class Written:
    path: Path
    replaced: bool  # it existed and --force replaced it
    what: str = ""  # an edit of a file that is the user's (`.venv/ added`)


def app_name(project: Path) -> str:
    """The project directory's name as an app name: letters, digits, `_`, `.` and `-` (unit names)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", project.resolve().name.lower()).strip("-._")[:40]
    return name or "app"


def repository_files(project: Path) -> dict[str, str]:
    """The texts detection reads (deploytool.detect), by path relative to the project."""
    found = {}
    for pattern in READ:
        for path in sorted(project.glob(pattern)):
            if path.is_file():
                found[path.relative_to(project).as_posix()] = path.read_text(errors="replace")
    return found


def scaffold(relative: str, app: str, detected: detect.Detected | None = None) -> str:
    text = (resources.files("deploytool") / "scaffold" / FILES[relative]).read_text()
    if relative == "inventories/production.yml":
        workers, overrides = workers_yaml(app, detected or detect.Detected())
        text = text.replace(WORKERS_PLACEHOLDER + "\n", workers).replace(OVERRIDES_PLACEHOLDER + "\n", overrides)
    return text.replace(APP_PLACEHOLDER, app)


def _line(indent: int, text: str, comment: str = "") -> str:
    line = " " * indent + text
    if comment:
        line = line.ljust(COMMENT_AT - 1) + " # " + comment.replace("\n", " ")
    return line + "\n"


def _flow(value: object) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, width=10**6)).strip()


def _queues(queues: tuple[Queue, ...]) -> list[object]:
    return [q.name if q.weight is None else {q.name: q.weight} for q in queues]


_EXAMPLE = """      jobs:
        kind: rq                      # sidekiq | celery | rq | dramatiq | sneakers | command
        processes: 2                  # systemd instances __app__-jobs@1..2 on each host
        queues: [high, default]
        timeout: 30                   # seconds a stopping worker may take to finish its job
"""
_EXAMPLE_OVERRIDE = {"jobs": 4}


def _group_yaml(app: str, g: detect.Group) -> str:
    out = _line(6, f"{g.name}:", g.why)
    if g.procfile is not None:
        out += _line(8, f"procfile: {g.procfile}", "the command is this line of the Procfile, read at each deploy")
    out += _line(8, f"kind: {g.kind}", g.kind_why)
    if g.command:
        out += _line(8, f"command: {_flow(list(g.command))}",
                     "CHANGE `app` to the module of your app" if g.placeholder else "")
    if g.config:
        out += _line(8, f"config: {g.config}", f"{g.name} -C")
    out += _line(8, "processes: 1", "$PORT: one process (foreman gives each instance its own port)" if g.uses_port
                 else f"systemd instances {app}-{g.name}@1..N on each host")
    if g.threads is not None:
        out += _line(8, f"threads: {g.threads}", g.concurrency_note)
    elif g.concurrency_note:
        out += _line(8, f"# {g.concurrency_note}")
    if g.queues:
        out += _line(8, f"queues: {_flow(_queues(g.queues))}", g.queues_why)
    return out


def workers_yaml(app: str, detected: detect.Detected) -> tuple[str, str]:
    """The `workers:` entries of the production inventory and worker-2's override of one of them."""
    if not detected.groups:
        comment = "      # Nothing in this repository names its workers (no Procfile, config/sidekiq.yml,\n" \
                  "      # Gemfile.lock or requirements naming sidekiq, celery, rq or dramatiq): an example.\n"
        return comment + _EXAMPLE, _overrides(_EXAMPLE_OVERRIDE)
    text = "".join(_group_yaml(app, g) for g in detected.groups)
    text += "".join(_line(6, f"# not a group: {s.line}", s.why) for s in detected.skipped)
    first = next((g for g in detected.groups if not g.uses_port), None)
    return text, _overrides({first.name: 2} if first else {})


def _overrides(processes: Mapping[str, int]) -> str:
    if not processes:
        return ""
    text = _line(4, "apps:", "per-host overrides of any app or worker-group key")
    text += _line(6, f"{APP_PLACEHOLDER}:") + _line(8, "workers:")
    return text + "".join(_line(10, f"{name}: {{processes: {n}}}") for name, n in processes.items())


def ignore_venv(project: Path) -> bool:
    """Add `.venv/` to the project's .gitignore when there is a .venv it does not ignore yet."""
    if not (project / ".venv").exists():
        return False
    path = project / ".gitignore"
    text = path.read_text() if path.is_file() else ""
    if {".venv", ".venv/", "/.venv", "/.venv/"} & {ln.strip() for ln in text.splitlines()}:
        return False
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + ".venv/\n")
    return True


def init(project: Path, force: bool = False) -> list[Written]:
    """Write the scaffold into `project`; InputError naming all existing files unless `force`."""
    app = app_name(project)
    targets = {relative: project / relative for relative in FILES}
    existing = [relative for relative, path in targets.items() if path.exists() or path.is_symlink()]
    if existing and not force:
        raise InputError(f"{project.resolve()}: would overwrite {', '.join(existing)} "
                         "(nothing written; --force replaces them)")
    detected = detect.detect(repository_files(project))
    texts = {relative: scaffold(relative, app, detected) for relative in targets}  # all read before any write
    written = []
    for relative, path in targets.items():
        text = texts[relative]
        path.parent.mkdir(parents=True, exist_ok=True)
        replaced = relative in existing
        if path.is_symlink():
            path.unlink()  # replace the link itself, never write through it
        path.write_text(text)
        written.append(Written(path, replaced))
    if ignore_venv(project):
        written.append(Written(project / ".gitignore", replaced=False, what=".venv/ added"))
    return written
