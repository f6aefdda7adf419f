"""The remote script that makes a host's unit files for one app match the rendered ones.

One round trip: write changed files, stop/disable instances that should no longer run, remove units of
groups that are gone, daemon-reload only if a file changed, enable instances 1..N and the target.
Units carry `X-Deploytool-App=<app>` (units.MARKER) so an app's own units are found by that line.

Most deploys change no unit: `unchanged` tells that first, as the deploy user with no sudo and no
systemctl (each a process, a PAM session or a D-Bus call, and the stage's whole cost), from one
pass of checksums over the unit files, the enablement links `systemctl enable` makes, and for the
environment files (root's only) a record the last sync left beside them (RECORD); only when
something differs does the sync run.

The groups' environment files (secrets) are written beside, in units.environment_dir(): root:root
0600 in system mode. Their content reaches the host only inside the script (a here-document, never a
command's argument) and is never printed: the dry run says only whether a file would change.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Callable, Sequence

from deploytool import units
from deploytool.commands.systemctl import enable_linger, systemctl
from deploytool.inventory import App
from deploytool.units import MARKER, EnvFile

q = shlex.quote

SEPARATOR = "\n@@@deploytool-unit@@@ "
# Lines of read_all() naming an environment file that would change: `ENV_CHANGED <file name>`.
ENV_CHANGED = "@@@deploytool-env-changed@@@"
# Ends the here-documents carrying environment files (base64: the content can never hold it).
HEREDOC_END = "DEPLOYTOOL_ENV_END"


# Beside the environment files (units.environment_dir): what the last complete sync wrote there, one
# sha256 over all the files and then each one's inode, size, mtime and ctime as `stat` prints them. The deploy user may
# stat the files (not read them): a file written since, by anyone, no longer matches. Owned by the
# deploy user, 0600: it holds nothing that user cannot read with sudo.
RECORD = ".synced"
_STAT = "%n %i %s %y %z"


def unit_dir(app: App) -> str:
    """The units' directory as shell text on the host (user mode: under the deploy user's $HOME)."""
    path = units.unit_dir(app)
    return path if path.startswith("/") else f"$HOME/{path}"


def _sudo(app: App) -> str:
    return "" if app.systemd == "user" else "sudo -n "


def _heredoc(content: str, consumer: str) -> str:
    """Shell text (ending in a newline) piping `content` into `consumer`: base64 in a here-document,
    so the content is neither in any command's argv (`ps`) nor interpreted by the shell."""
    b64 = base64.encodebytes(content.encode()).decode()
    return f"base64 -d <<'{HEREDOC_END}' | {consumer}\n{b64}{HEREDOC_END}\n"


def _env_dir(app: App) -> str:
    # Only validated names in it (app name, $HOME): safe inside double quotes.
    return units.environment_dir(app)


def _env_install(app: App) -> str:
    """Write stdin to "$f": system mode root:root 0600 (the workers' user cannot read it)."""
    if app.systemd == "user":
        return 'install -m 0600 /dev/stdin "$f"'
    return 'sudo -n install -m 0600 -o root -g root /dev/stdin "$f"'


def _env_same(app: App) -> str:
    # Compare stdin with "$f" (as root in system mode: only root may read it).
    return f'{_sudo(app)}cmp -s - "$f" 2>/dev/null'


def _env_mkdir(app: App) -> str:
    # The directory holds only file names (group names): readable, so stale files can be listed.
    if app.systemd == "user":
        return 'mkdir -p "$e" && chmod 0700 "$e"'
    return 'sudo -n install -d -m 0755 -o root -g root "$e"'


def _env_blocks(app: App, env_files: Sequence[EnvFile], changed: Callable[[EnvFile], str],
                removed: str) -> list[str]:
    """Shell text, with "$e" the env dir: for each wanted env file that differs from the host's ("$f"
    set), `changed(file)`; for each of the app's env files on the host not wanted any more, `removed`."""
    lines = []
    for env in env_files:
        lines.append(
            f'f="$e"/{q(env.name)}\n'
            f"if ! {_heredoc(env.content, _env_same(app))}"
            f"then\n{changed(env)}\nfi"
        )
    wanted = " ".join(q(env.name) for env in env_files)
    lines.append(
        f'for f in "$e"/*.env; do [ -e "$f" ] || continue; case " {wanted} " in *" ${{f##*/}} "*) ;; '
        f"*) {removed};; esac; done"
    )
    return lines


def _sha256(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def _record(app: App, env_files: Sequence[EnvFile]) -> str:
    """Shell text printing the record of `env_files` as they are on the host now ("$e" their dir): one
    sha256 over all of them (no value can be guessed file by file from it), then each file's stat."""
    digest = hashlib.sha256(b"".join(f"{env.name}\0{env.content}\0".encode() for env in env_files)).hexdigest()
    paths = " ".join(f'"$e"/{q(env.name)}' for env in env_files)
    return f"{{ echo {digest}; stat -c {q(_STAT)} {paths} 2>/dev/null; }}"


def _write_record(app: App, env_files: Sequence[EnvFile]) -> str:
    if not env_files:
        return "true"
    if app.systemd == "user":
        return f'{_record(app, env_files)} | install -m 0600 /dev/stdin "$e"/{RECORD}'
    return f'{_record(app, env_files)} | sudo -n install -m 0600 -o "$(id -un)" /dev/stdin "$e"/{RECORD}'


def _install_links(name: str, content: str) -> list[str] | None:
    """The links `systemctl enable` makes for a unit file's [Install] section (paths relative to the unit
    directory, `%s` standing for the unit's name); None if the section holds more than WantedBy= and
    RequiredBy=: the links could not be told here."""
    links: list[str] = []
    section = ""
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Install]":
            continue
        key, _, value = line.partition("=")
        suffix = {"WantedBy": "wants", "RequiredBy": "requires"}.get(key.strip())
        if suffix is None:
            return None
        links += [f"{t}.{suffix}/%s" for t in value.split()]
    return links


def enablement_links(files: Sequence[tuple[str, str]], enabled: Sequence[str], target: str) -> list[str] | None:
    """The symlinks, relative to the unit directory, that being enabled means for the target and each
    instance in `enabled` (instances from their template's file); None when they cannot be told."""
    by_name = dict(files)
    links: list[str] = []
    for unit in [target, *enabled]:
        prefix, at, rest = unit.partition("@")
        file = f"{prefix}@{rest[rest.index('.'):]}" if at and "." in rest else unit
        if file not in by_name:
            return None
        found = _install_links(file, by_name[file])
        if found is None:
            return None
        links += [link.replace("%s", unit) for link in found]
    return links


CHECK = "units_unchanged"


def unchanged(app: App, files: Sequence[tuple[str, str]], enabled: Sequence[str], target: str,
              env_files: Sequence[EnvFile] = (), linger: str | None = None) -> str | None:
    """Shell text defining `units_unchanged`, a function that succeeds only if the host has exactly
    what sync() would make: every unit file (sha256, read), no other unit of the app, the enablement
    links of the target and of `enabled` and no other instance in the target's .wants/, the
    environment files as the record of the last sync says (never read: root's own), none other; and
    with `linger` (user mode), that user lingering. No sudo, no systemctl: builtins, sha256sum, grep,
    cat, stat. None if that cannot be told from files (an [Install] section with more than WantedBy=
    and RequiredBy=): then the sync always runs."""
    links = enablement_links(files, enabled, target)
    if links is None:
        return None
    sums = " ".join(f'{_sha256(content)} "$d"/{q(name)}' for name, content in files)
    names = " ".join(q(name) for name, _ in files)
    wanted = " ".join(q(u) for u in enabled)
    env_names = " ".join(q(env.name) for env in env_files)
    lines = [
        f"{CHECK}() {{",
        f'd="{unit_dir(app)}"; e="{_env_dir(app)}"',
        f"printf '%s  %s\\n' {sums} | sha256sum --check --status >/dev/null 2>&1 || return 1" if files
        else ":",
        f"for f in $(grep -lx {q(MARKER + '=' + app.name)} \"$d\"/*.service \"$d\"/*.target 2>/dev/null); do "
        f'case " {names} " in *" ${{f##*/}} "*) ;; *) return 1;; esac; done',
        *(f'[ -L "$d"/{q(link)} ] || return 1' for link in links),
        f'for f in "$d"/{q(target)}.wants/*; do [ -e "$f" ] || [ -L "$f" ] || continue; '
        f'case " {wanted} " in *" ${{f##*/}} "*) ;; *) return 1;; esac; done',
        f'for f in "$e"/*.env; do [ -e "$f" ] || continue; '
        f'case " {env_names} " in *" ${{f##*/}} "*) ;; *) return 1;; esac; done',
    ]
    if env_files:
        lines.append(f'[ "$(cat "$e"/{RECORD} 2>/dev/null)" = "$({_record(app, env_files)})" ] || return 1')
    if linger is not None:
        lines.append(f"[ -e /var/lib/systemd/linger/{q(linger)} ] || return 1")
    lines.append("}")
    return "\n".join(lines)


def sync(app: App, files: Sequence[tuple[str, str]], enabled: Sequence[str], target: str,
         env_files: Sequence[EnvFile] = ()) -> str:
    """`files`: (name, content) of every unit the app should have; `enabled`: the instances to enable;
    `env_files`: the groups' environment files (units.environment_files()).

    Prints `changed` when a unit or environment file was written or removed (the workers then need
    a restart); daemon-reload runs only when a unit file changed."""
    d = unit_dir(app)
    sc = " ".join(q(a) for a in systemctl(app))
    sudo = _sudo(app)
    expected_files = " ".join(q(name) for name, _ in files)
    expected_units = " ".join(q(u) for u in enabled)
    lines = [f'd="{d}"', "changed=0", "env_changed=0", f'{sudo}mkdir -p "$d"']
    for name, content in files:
        b64 = base64.b64encode(content.encode()).decode()
        lines.append(
            f"if ! printf %s {b64} | base64 -d | cmp -s - \"$d\"/{q(name)}; then "
            f"printf %s {b64} | base64 -d | {sudo}tee \"$d\"/{q(name)} >/dev/null "
            f"|| {{ echo \"cannot write $d/\"{q(name)} >&2; exit 1; }}; changed=1; fi"
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
    lines.append(f'e="{_env_dir(app)}"')
    if env_files:
        lines.append(_env_mkdir(app))
    lines += _env_blocks(
        app, env_files,
        lambda env: (f"{_heredoc(env.content, _env_install(app)).rstrip()}\n"
                     '[ $? = 0 ] || { echo "cannot write $f" >&2; exit 1; }; env_changed=1'),
        f'{sudo}rm -f "$f" && env_changed=1',
    )
    lines.append(f'[ "$changed" = 0 ] || {sc} daemon-reload')
    lines.append('[ "$changed$env_changed" = 00 ] || echo changed')
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
    # Last: the record of a sync that went through (unchanged() trusts it).
    lines.append(f"[ $? != 0 ] || {_write_record(app, env_files)}")
    return "\n".join(lines)


def install(app: App, files: Sequence[tuple[str, str]], enabled: Sequence[str], target: str,
            env_files: Sequence[EnvFile] = (), linger: str | None = None) -> str:
    """sync(), run only if unchanged() does not vouch for the host; `linger` (user mode): the deploy
    user, made to linger first (user units start at boot only then)."""
    text = sync(app, files, enabled, target, env_files)
    if linger is not None:
        text = " ".join(q(a) for a in enable_linger(linger)) + " && {\n" + text + "\n}"
    check = unchanged(app, files, enabled, target, env_files, linger)
    if check is None:
        return text
    return f"{check}\nif ! {CHECK}; then\n{text}\nfi"


def remove_all(app: App) -> str:
    """Stop, disable and delete every unit of the app (workers.uninstall)."""
    d = unit_dir(app)
    sc = " ".join(q(a) for a in systemctl(app))
    sudo = _sudo(app)
    return "\n".join([
        f'd="{d}"',
        f'{sudo}rm -rf "{_env_dir(app)}"',
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


def read_all(app: App, env_files: Sequence[EnvFile] = ()) -> str:
    """Print `ENV_CHANGED <name>` for each environment file that would be written or removed (never
    its content), then each of the app's unit files after a separator line naming it (read only)."""
    d = unit_dir(app)
    units = (
        f'd="{d}"; for f in $(grep -lx {q(MARKER + "=" + app.name)} "$d"/*.service "$d"/*.target 2>/dev/null); '
        f'do printf "{SEPARATOR.replace(chr(10), chr(92) + "n")}%s\\n" "${{f##*/}}"; cat "$f"; done'
    )
    say = f'echo {ENV_CHANGED} "${{f##*/}}"'
    return "\n".join([f'e="{_env_dir(app)}"', *_env_blocks(app, env_files, lambda env: say, say), units, "true"])


def parse_read_all(out: str) -> tuple[dict[str, str], list[str]]:
    """read_all's output: the app's unit files by name, and the environment files that differ. Lines
    printed before it (other probes of the same round trip) are ignored."""
    head, *chunks = ("\n" + out).split(SEPARATOR)
    env_changed = [line.split(" ", 1)[1] for line in head.splitlines() if line.startswith(ENV_CHANGED + " ")]
    files: dict[str, str] = {}
    for chunk in chunks:
        name, _, content = chunk.partition("\n")
        files[name.strip()] = content
    return files, env_changed


def write_env_files(app: App, env_files: Sequence[EnvFile]) -> str:
    """Write the environment files that differ from the host's, removing none and restarting nothing:
    for a command that needs its file before the units' sync comes (a build, deploytool.context)."""
    if not env_files:
        return "true"

    def write(env: EnvFile) -> str:
        return (f"{_heredoc(env.content, _env_install(app)).rstrip()}\n"
                '[ $? = 0 ] || { echo "cannot write $f" >&2; exit 1; }')

    return "\n".join([f'e="{_env_dir(app)}"', _env_mkdir(app), *_env_blocks(app, env_files, write, ":")])


# Lines of read_instances(): `INSTANCE loaded UNIT ACTIVE` (systemd knows the unit and its active state)
# and `INSTANCE enabled UNIT` (a link in the app's target's .wants/: it starts with the target).
INSTANCE = "@@@deploytool-instance@@@"


def read_instances(app: App, target: str) -> str:
    """Print the app's worker instances as the host has them (read only): one `systemctl list-units`
    over the patterns of the app's own template units, and the target's .wants/ links."""
    d = unit_dir(app)
    sc = " ".join(q(a) for a in systemctl(app))
    return "\n".join([
        f'd="{d}"',
        f"owned=$(grep -lx {q(MARKER + '=' + app.name)} \"$d\"/*.service 2>/dev/null || true)",
        "patterns=''; for f in $owned; do n=${f##*/}; case $n in *@.service) "
        "patterns=\"$patterns ${n%@.service}@*.service\";; esac; done",
        # set -f: the patterns are systemctl's to match, never the shell's against the current directory.
        f"( set -f; [ -z \"$patterns\" ] || {sc} list-units --all --plain --no-legend $patterns ) "
        f"| awk '{{print \"{INSTANCE} loaded\", $1, $3}}'",
        f"for f in \"$d\"/{q(target)}.wants/*.service; do [ -e \"$f\" ] || [ -L \"$f\" ] || continue; "
        f'echo {INSTANCE} enabled "${{f##*/}}"; done',
    ])
