"""What an app runs, guessed from its repository: the worker groups `deploytool init` writes.

Pure: it reads the texts of a few files (Procfile, config/sidekiq.yml, Gemfile.lock, requirements*.txt,
pyproject.toml) handed to it and says, per group, its kind, its queues and why (each guess carries the
file and line it was read from, which init writes beside it as a YAML comment). The Procfile wins when
there is one: its process types are the groups, each keeping its command there (`procfile:`); without
one, a group per worker system the dependencies name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from deploytool import procfile
from deploytool.kinds import Queue

SIDEKIQ_CONFIG = "config/sidekiq.yml"
# Heroku's release phase: a one-off command run before a release goes live, not a long-running process.
ONE_OFF_TYPES = frozenset({"release"})
# Programs that run the next word as the real program.
_WRAPPERS: tuple[tuple[str, ...], ...] = (
    ("bundle", "exec"), ("bin/bundle", "exec"), ("poetry", "run"), ("pipenv", "run"), ("uv", "run"),
    ("pdm", "run"), ("hatch", "run"),
)
_PYTHON = re.compile(r"python[0-9.]*")


@dataclass(frozen=True)
class Group:
    """One worker group as init writes it."""

    name: str
    kind: str
    why: str  # where the group comes from: `Procfile: worker: ...`
    kind_why: str = ""  # what the kind was read from
    procfile: str | None = None
    command: tuple[str, ...] = ()  # without a Procfile: the program (with its wrapper)
    config: str | None = None
    queues: tuple[Queue, ...] = ()
    queues_why: str = ""
    threads: int | None = None
    concurrency_note: str = ""  # a concurrency read but not written as a key (Sidekiq reads it itself)
    uses_port: bool = False
    placeholder: bool = False  # its command names a module init cannot know: the user must edit it


@dataclass(frozen=True)
class Skipped:
    """A Procfile process type init does not turn into a group, and why."""

    name: str
    line: str
    why: str


@dataclass(frozen=True)
class Detected:
    groups: tuple[Group, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


# --- dependencies ---------------------------------------------------------------------------------


def gems(lock: str) -> dict[str, str]:
    """Gem name → version, from a Gemfile.lock's `specs:` lines (`    sidekiq (7.2.4)`)."""
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^    ([A-Za-z0-9_.-]+) \(([^)\s]+)\)", lock, re.M)}


def python_packages(text: str) -> set[str]:
    """Distribution names a requirements file or pyproject.toml names (normalized, extras dropped): a
    requirement starts a line (requirements) or a quoted string (pyproject)."""
    text = re.sub(r"(^|\s)#.*", "", text, flags=re.M)
    pattern = r"""(?:^\s*|["'])([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?=[<>=!~;@"',]|$)"""
    return {re.sub(r"[-_.]+", "-", m.group(1)).lower() for m in re.finditer(pattern, text, re.M)}


def dependencies(files: Mapping[str, str]) -> dict[str, str]:
    """Worker system → where the app depends on it (`sidekiq 7.2.4 in Gemfile.lock`)."""
    found: dict[str, str] = {}
    locked = gems(files.get("Gemfile.lock", ""))
    for system in ("sidekiq", "sneakers"):
        if system in locked:
            found[system] = f"{system} {locked[system]} in Gemfile.lock"
    python_files = sorted(n for n in files if re.fullmatch(r"requirements[^/]*\.txt|pyproject\.toml", n))
    for name in python_files:
        packages = python_packages(files[name])
        for system in ("celery", "rq", "dramatiq"):
            if system in packages:
                found.setdefault(system, f"{system} in {name}")
    return found


# --- commands -----------------------------------------------------------------------------------


def program_words(argv: Sequence[str]) -> list[str]:
    """`argv` without the wrappers that run the real program: `bundle exec`, `poetry run`, `python -m`."""
    words = list(argv)
    changed = True
    while changed and words:
        changed = False
        for wrapper in _WRAPPERS:
            if tuple(words[:len(wrapper)]) == wrapper:
                words = words[len(wrapper):]
                changed = True
        if len(words) >= 3 and _PYTHON.fullmatch(PurePosixPath(words[0]).name) and words[1] == "-m":
            words = words[2:]
            changed = True
    return words


def _base(word: str) -> str:
    return PurePosixPath(word).name


def _option_values(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """Values of `-Q a` / `--queues=a` style options."""
    values = []
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                values.append(args[i + 1])
            elif flag.startswith("--") and arg.startswith(flag + "="):
                values.append(arg[len(flag) + 1:])
            elif not flag.startswith("--") and arg.startswith(flag) and len(arg) > len(flag):
                values.append(arg[len(flag):])  # -Qa,b
    return values


def _sidekiq_queues(args: Sequence[str]) -> list[Queue]:
    out = []
    for value in _option_values(args, ("-q", "--queue")):
        name, _, weight = value.partition(",")
        out.append(Queue(name, int(weight) if weight.isdigit() and int(weight) > 1 else None))
    return out


def _celery_queues(args: Sequence[str]) -> list[Queue]:
    return [Queue(q) for v in _option_values(args, ("-Q", "--queues")) for q in v.split(",") if q]


# rq worker's options that take a value (the rest of its words are queue names).
_RQ_VALUED = frozenset({"-u", "--url", "-c", "--config", "-w", "--worker-class", "-j", "--job-class",
                        "-n", "--name", "-P", "--path", "--results-ttl", "--worker-ttl", "--job-monitoring-interval",
                        "--logging_level", "--log-format", "--date-format", "--serializer", "-S",
                        "--exception-handler", "--max-jobs", "--max-idle-time", "--pid", "--sentry-dsn",
                        "--queue-class", "--connection-class", "--dequeue-strategy", "--maintenance-interval"})


def _rq_queues(args: Sequence[str]) -> list[Queue]:
    out, skip = [], False
    for arg in args[args.index("worker") + 1:] if "worker" in args else ():
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _RQ_VALUED
        else:
            out.append(Queue(arg))
    return out


def _dramatiq_queues(args: Sequence[str]) -> list[Queue]:
    out, taking = [], False
    for arg in args:
        if arg in ("-Q", "--queues"):
            taking = True
        elif arg.startswith("-"):
            taking = False
        elif taking:
            out.append(Queue(arg))
    return out


@dataclass(frozen=True)
class _Rule:
    kind: str
    matches: Callable[[Sequence[str]], bool]
    queues: Callable[[Sequence[str]], list[Queue]]


# The program decides the kind; Celery and RQ only when the command starts a worker (`celery beat` is a
# scheduler, a plain command).
_RULES = (
    _Rule("sidekiq", lambda w: _base(w[0]) == "sidekiq", _sidekiq_queues),
    _Rule("celery", lambda w: _base(w[0]) == "celery" and "worker" in w[1:], _celery_queues),
    _Rule("rq", lambda w: _base(w[0]) == "rq" and "worker" in w[1:2], _rq_queues),
    _Rule("dramatiq", lambda w: _base(w[0]) == "dramatiq", _dramatiq_queues),
)


# What an inventory accepts as a group name and as a queue name (deploytool.inventory.model).
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def kind_of(argv: Sequence[str]) -> tuple[str, list[Queue]]:
    """The worker kind a command starts (`command` when it is none deploytool knows) and the queues its
    own options name (empty: the kind's default, or a config file; names an inventory would refuse, such
    as RQ's `*`, are left out)."""
    words = program_words(argv)
    for rule in _RULES:
        if words and rule.matches(words):
            return rule.kind, [q for q in rule.queues(words[1:]) if QUEUE_NAME.fullmatch(q.name)]
    return "command", []


def queues_of(kind: str, argv: Sequence[str]) -> list[Queue]:
    """The queues a command of `kind` names in its own options."""
    found, queues = kind_of(argv)
    return queues if found == kind else []


# --- config/sidekiq.yml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SidekiqConfig:
    queues: tuple[Queue, ...] = ()
    concurrency: int | None = None
    problem: str = ""  # why it could not be read


def sidekiq_config(text: str, environment: str = "production") -> SidekiqConfig:
    """Queues and concurrency of a sidekiq.yml (keys with or without Ruby's leading colon; an
    environment section overrides the top level, as Sidekiq reads it)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return SidekiqConfig(problem=f"not plain YAML ({str(e).splitlines()[0]})")
    if not isinstance(data, dict):
        return SidekiqConfig(problem="not a mapping")

    def plain(d: Mapping[Any, Any]) -> dict[str, Any]:
        return {str(k).lstrip(":"): v for k, v in d.items()}

    top = plain(data)
    over = top.get(environment)
    settings = {**top, **(plain(over) if isinstance(over, dict) else {})}
    queues: list[Queue] = []
    for item in settings.get("queues") or ():
        if isinstance(item, str):
            queues.append(Queue(item))
        elif isinstance(item, list) and item and isinstance(item[0], str):
            weight = item[1] if len(item) > 1 and isinstance(item[1], int) and item[1] > 1 else None
            queues.append(Queue(item[0], weight))
    concurrency = settings.get("concurrency")
    queues = [q for q in queues if QUEUE_NAME.fullmatch(q.name)]
    return SidekiqConfig(tuple(queues), concurrency if isinstance(concurrency, int) and concurrency > 0 else None)


# --- the whole repository ------------------------------------------------------------------------


def _procfile_groups(entries: list[procfile.Entry], files: Mapping[str, str],
                     deps: Mapping[str, str]) -> tuple[list[Group], list[Skipped]]:
    groups, skipped = [], []
    for entry in entries:
        line = f"{entry.name}: {entry.command}"
        if entry.name in ONE_OFF_TYPES:
            skipped.append(Skipped(entry.name, line, "a one-off command run before a release, not a worker"))
            continue
        if not GROUP_NAME.fullmatch(entry.name):
            skipped.append(Skipped(entry.name, line, "not a worker group name (a letter or digit first)"))
            continue
        try:
            cmd = procfile.command(entry)
            procfile.find(entries, entry.name)
        except ValueError as e:
            skipped.append(Skipped(entry.name, line, str(e)))
            continue
        kind, queues = kind_of(cmd.argv)
        why = f"Procfile: {line}"
        kind_why = kind_of_why(kind, cmd.argv) + (f"; {deps[kind]}" if kind in deps else "")
        queues_why = "from its command" if queues else ""
        note = ""
        config = _option_values(program_words(cmd.argv)[1:], ("-C", "--config")) if kind == "sidekiq" else []
        if kind == "sidekiq" and config and config[-1] in files:
            read = sidekiq_config(files[config[-1]])
            if read.problem:
                note = f"{config[-1]}: {read.problem}"
            else:
                if not queues and read.queues:
                    queues, queues_why = list(read.queues), f"from {config[-1]}"
                if read.concurrency is not None:
                    note = f"concurrency {read.concurrency} per process: {config[-1]} (Sidekiq reads it through -C)"
        groups.append(Group(name=entry.name, kind=kind, why=why, kind_why=kind_why, procfile=entry.name,
                            queues=tuple(queues), queues_why=queues_why, concurrency_note=note,
                            uses_port=cmd.uses_port))
    return groups, skipped


def kind_of_why(kind: str, argv: Sequence[str]) -> str:
    if kind == "command":
        return "its command starts no worker system deploytool knows"
    starts = "worker" if kind in ("celery", "rq") else ""
    return f"its command runs {_base(program_words(argv)[0])} {starts}".rstrip()


def _dependency_groups(files: Mapping[str, str], deps: Mapping[str, str]) -> list[Group]:
    groups = []
    ruby = "Gemfile.lock" in files
    if "sidekiq" in deps:
        read = sidekiq_config(files[SIDEKIQ_CONFIG]) if SIDEKIQ_CONFIG in files else SidekiqConfig()
        has_config = SIDEKIQ_CONFIG in files and not read.problem
        groups.append(Group(
            name="sidekiq", kind="sidekiq", why=deps["sidekiq"], kind_why=deps["sidekiq"],
            command=("bundle", "exec", "sidekiq") if ruby else (),
            config=SIDEKIQ_CONFIG if SIDEKIQ_CONFIG in files else None,
            queues=read.queues, queues_why=f"from {SIDEKIQ_CONFIG}" if read.queues else "",
            threads=read.concurrency,
            concurrency_note=f"{SIDEKIQ_CONFIG}: {read.problem}" if read.problem else
            (f"threads from {SIDEKIQ_CONFIG}" if has_config and read.concurrency else "")))
    if "celery" in deps:
        groups.append(Group(name="celery", kind="celery", why=deps["celery"], kind_why=deps["celery"],
                            command=("celery", "-A", "app"), placeholder=True))
    if "rq" in deps:
        groups.append(Group(name="rq", kind="rq", why=deps["rq"], kind_why=deps["rq"]))
    if "dramatiq" in deps:
        groups.append(Group(name="dramatiq", kind="dramatiq", why=deps["dramatiq"], kind_why=deps["dramatiq"],
                            command=("dramatiq", "app"), placeholder=True))
    return groups


def detect(files: Mapping[str, str]) -> Detected:
    """The worker groups of the repository whose files (path → text) are given."""
    deps = dependencies(files)
    if "Procfile" in files:
        groups, skipped = _procfile_groups(procfile.parse(files["Procfile"]), files, deps)
        return Detected(tuple(groups), tuple(skipped))
    return Detected(tuple(_dependency_groups(files, deps)))
