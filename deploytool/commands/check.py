"""The read-only probes of `fab check`, as one shell script per host and app. Each probe prints one line,
`@@@deploytool-check@@@ KIND NAME ok|missing [DETAIL...]`, which deploytool.operations.check parses. Nothing here
writes: `sudo --list` only asks the policy, `command -v` only looks, `df`/`du` only measure.

The markers are data lines, not the executor's fact markers (`@@deploytool-NAME value`, one value per
name, deploytool.engine.execute): the executor passes them on as the round trip's output."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from deploytool.commands.release import Layout
from deploytool.inventory import App

q = shlex.quote

MARK = "@@@deploytool-check@@@"
PROGRAM = "@@@deploytool-program@@@"  # a worker group's program (deploytool.context.resolve_programs)


def _line(kind: str, name: str, test: str, detail: str = "") -> str:
    # `name` is shell text (a quoted word or a "$var"): what the host reports back.
    ok = f"echo {MARK} {kind} {name} ok{(' ' + detail) if detail else ''}"
    missing = f"echo {MARK} {kind} {name} missing{(' ' + detail) if detail else ''}"
    return f"if {test}; then {ok}; else {missing}; fi"


def sudo_rights(programs: Sequence[str]) -> list[str]:
    """May the SSH user run each program with `sudo -n` (no password)? `sudo -l PROGRAM` asks the policy
    without running anything."""
    return [_line("sudo", q(p), f"sudo --non-interactive --list {q(p)} >/dev/null 2>&1") for p in programs]


def programs(names: Sequence[str]) -> list[str]:
    return [_line("program", q(p), f"command -v {q(p)} >/dev/null 2>&1") for p in names]


def _nearest_existing(path: str) -> str:
    # deploy_to may not exist before a first deploy: then its nearest existing parent must let the SSH
    # user create it (the deploy's check stage runs `mkdir -p` as that user).
    return f'd={q(path)}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done'


def writable(app: App) -> list[str]:
    return [_nearest_existing(app.deploy_to), _line("writable", '"$d"', '[ -d "$d" ] && [ -w "$d" ]')]


def linked_files(app: App) -> list[str]:
    return [_line("linked", q(f), f"[ -e {q(app.shared_path + '/' + f)} ]") for f in app.linked_files]


def disk(app: App) -> list[str]:
    """Kilobytes free on the filesystem holding deploy_to, and the size of the current release (0 if
    there is none)."""
    cur = q(app.current_path)
    return [
        _nearest_existing(app.deploy_to),
        "free=$(df -Pk \"$d\" | awk 'NR==2 {print $4}')",
        f"size=0; if [ -d {cur}/ ]; then size=$(du -sk \"$(readlink -f {cur})\" | cut -f1); fi",
        f'echo {MARK} disk "$d" ok "$free" "$size"',
    ]


def lock(app: App) -> list[str]:
    """Is the app's deploy lock held by someone (a deploy running now)? `flock -n` on the existing lock
    file only asks (an instant's shared lock, let go at once; a missing file is not created); a held
    lock is reported with its holder's record. A lock directory of an older deploytool counts as held."""
    lay = Layout(app)
    held = f'echo {MARK} lock "$r" missing $(tail -n 1 "$r" 2>/dev/null)'
    return [
        f"r={q(lay.lock)}; f={q(lay.flock)}",
        f'if [ -d "$r" ]; then echo {MARK} lock "$r" missing $(cat "$r/holder" 2>/dev/null)',
        f'elif [ -e "$f" ] && ! flock -s -n "$f" true 2>/dev/null; then {held}',
        f'else echo {MARK} lock "$r" ok; fi',
    ]


def probe(app: App, sudo: Sequence[str], needed: Sequence[str]) -> str:
    return "\n".join([*sudo_rights(sudo), *programs(needed), *writable(app), *linked_files(app), *disk(app),
                      *lock(app), released(app)])


def if_released(app: App, released: str, unreleased: str) -> str:
    """`released` once the app has a current release, `unreleased` before; exits 0 whatever they
    report: what they print is the finding, not their exit code."""
    return f"if [ -d {q(app.current_path)}/ ]; then\n{released}\nelse\n{unreleased}\nfi || true"


def released(app: App) -> str:
    """Is there a current release (a deploy happened)?"""
    return _line("current", "release", f"[ -d {q(app.current_path)}/ ]")


def parse(text: str) -> list[tuple[str, str, bool, list[str]]]:
    """(kind, name, ok, detail words) per probe line; other output is ignored."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == MARK:
            rows.append((parts[1], parts[2], parts[3] == "ok", parts[4:]))
    return rows


MISSING = "@@@deploytool-missing@@@"


def missing(paths: Sequence[str], home_paths: Sequence[str] = ()) -> str:
    """Print `MISSING path` for each of `paths` that does not exist (a directory with a trailing `/`
    must be one); `home_paths` are relative to the user's home. Read only; exits 0."""
    tests = [f"[ -e {q(p)} ] || echo {MISSING} {q(p)}" for p in paths]
    tests += [f'[ -e "$HOME/"{q(p)} ] || echo {MISSING} "$HOME/"{q(p)}' for p in home_paths]
    return "\n".join([*tests, "true"])


def parse_missing(text: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(MISSING + " ")]
