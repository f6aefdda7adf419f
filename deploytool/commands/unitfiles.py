"""The remote script that makes a host's unit files for one app match the rendered ones.

One round trip: write changed files, stop/disable instances that should no longer run, remove units of
groups that are gone, daemon-reload only if a file changed, enable instances 1..N and the target.
Units carry `X-Deploytool-App=<app>` (units.MARKER) so an app's own units are found by that line.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence
from pathlib import PurePosixPath

from deploytool import units
from deploytool.commands.systemctl import systemctl
from deploytool.inventory import App
from deploytool.units import MARKER

q = shlex.quote

SEPARATOR = "\n@@@deploytool-unit@@@ "


def unit_dir(app: App) -> str:
    """The units' directory as shell text on the host (user mode: under the deploy user's $HOME)."""
    path = units.unit_dir(app)
    return path if path.startswith("/") else f"$HOME/{path}"


def _sudo(app: App) -> str:
    return "" if app.systemd == "user" else "sudo -n "


def sync(app: App, files: Sequence[tuple[str, str]], enabled: Sequence[str], target: str) -> str:
    """`files`: (name, content) of every unit the app should have; `enabled`: the instances to enable.

    Prints `changed` when a unit file was written or removed."""
    d = unit_dir(app)
    sc = " ".join(q(a) for a in systemctl(app))
    sudo = _sudo(app)
    expected_files = " ".join(q(name) for name, _ in files)
    expected_units = " ".join(q(u) for u in enabled)
    lines = [f'd="{d}"', "changed=0", f'{sudo}mkdir -p "$d"']
    for name, content in files:
        b64 = base64.b64encode(content.encode()).decode()
        lines.append(
            f"if ! printf %s {b64} | base64 -d | cmp -s - \"$d\"/{q(name)}; then "
            f"printf %s {b64} | base64 -d | {sudo}tee \"$d\"/{q(name)} >/dev/null && changed=1; fi"
        )
    # Instances running or enabled that are not wanted any more: stop and disable them first.
    lines.append(
        f"owned=$(grep -lx {q(MARKER + '=' + app.name)} \"$d\"/*.service \"$d\"/*.target 2>/dev/null || true)"
    )
    lines.append(
        "patterns=''; for f in $owned; do n=${f##*/}; case $n in *@.service) "
        "patterns=\"$patterns ${n%@.service}@*.service\";; esac; done"
    )
    lines.append(
        f"present=$( {{ [ -z \"$patterns\" ] || {sc} list-units --all --plain --no-legend $patterns "
        f"| awk '{{print $1}}'; ls \"$d\"/{q(target)}.wants 2>/dev/null; }} | sort -u)"
    )
    lines.append(
        f"for u in $present; do case \" {expected_units} \" in *\" $u \"*) ;; *) "
        f"{sc} disable --quiet --now \"$u\" 2>/dev/null || {sc} stop \"$u\"; "
        f"{sudo}rm -f \"$d\"/{q(target)}.wants/\"$u\";; esac; done"
    )
    lines.append(
        f"for f in $owned; do n=${{f##*/}}; case \" {expected_files} \" in *\" $n \"*) ;; *) "
        f"{sudo}rm -f \"$f\" && changed=1;; esac; done"
    )
    lines.append(f'[ "$changed" = 0 ] || {{ {sc} daemon-reload && echo changed; }}')
    if enabled:
        # `enable` reloads systemd every time: only enable units not enabled yet. One is-enabled call
        # prints a state per unit, in order (its exit code only says whether any is enabled); if the
        # states do not line up with the units, enable them all.
        units = f"{q(target)} {expected_units}"
        lines.append(
            f"set -- $({sc} is-enabled {units} 2>/dev/null); "
            f"if [ $# -ne {len(enabled) + 1} ]; then todo={q(' '.join([target, *enabled]))}; "
            f"else todo=''; for u in {units}; do [ \"$1\" = enabled ] || todo=\"$todo $u\"; shift; done; fi"
        )
        lines.append(f'[ -z "$todo" ] || {sc} enable --quiet $todo')
    return "\n".join(lines)


def remove_all(app: App) -> str:
    """Stop, disable and delete every unit of the app (workers.uninstall)."""
    d = unit_dir(app)
    sc = " ".join(q(a) for a in systemctl(app))
    sudo = _sudo(app)
    return "\n".join([
        f'd="{d}"',
        f"owned=$(grep -lx {q(MARKER + '=' + app.name)} \"$d\"/*.service \"$d\"/*.target 2>/dev/null || true)",
        '[ -n "$owned" ] || exit 0',
        "units=''; for f in $owned; do n=${f##*/}; case $n in *@.service) "
        "units=\"$units ${n%@.service}@*.service\";; *) units=\"$units $n\";; esac; done",
        f"{sc} stop $units",
        f"for f in $owned; do n=${{f##*/}}; case $n in *@.service) ;; *) "
        f"{sc} disable --quiet \"$n\" 2>/dev/null || true;; esac; done",
        f"for f in $owned; do n=${{f##*/}}; case $n in *.target) {sudo}rm -rf \"$d/$n.wants\";; esac; done",
        f"{sudo}rm -f $owned",
        f"{sc} daemon-reload",
        f"{sc} reset-failed $units 2>/dev/null || true",
    ])


def read_all(app: App) -> str:
    """Print each of the app's unit files after a separator line naming it."""
    d = unit_dir(app)
    return (
        f'd="{d}"; for f in $(grep -lx {q(MARKER + "=" + app.name)} "$d"/*.service "$d"/*.target 2>/dev/null); '
        f'do printf "{SEPARATOR.replace(chr(10), chr(92) + "n")}%s\\n" "${{f##*/}}"; cat "$f"; done; true'
    )


def env_files(app: App, files: Sequence[tuple[str, str]]) -> str:
    """Write deploytool's environment files of `app` (path as deploytool.context.environment_file gives
    it, content): readable by root only in system mode (systemd reads them), by the user in user mode.
    The content reaches `install` through a pipe (printf is the shell's builtin), never as an argument
    of a program the script starts."""
    if not files:
        return "true"
    sudo = _sudo(app)
    owner = "-o root -g root " if sudo else ""

    def on_host(path: str) -> str:
        return q(path) if path.startswith("/") else f'"$HOME"/{q(path)}'

    lines = []
    for path, content in files:
        lines.append(f"{sudo}mkdir -p -m 0700 {on_host(str(PurePosixPath(path).parent))}")
        b64 = base64.b64encode(content.encode()).decode()
        lines.append(f"printf %s {b64} | base64 -d | {sudo}install -m 0600 {owner}/dev/stdin {on_host(path)}")
    return " && ".join(lines)
