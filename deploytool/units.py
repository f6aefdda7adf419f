"""Rendering systemd units for worker groups: one template unit per group, one target per app.

`<app>-<group>@.service` is instantiated as `<app>-<group>@1..N.service` (N = processes); every
instance is `PartOf=` and `WantedBy=` `<app>-workers.target`, so stopping or restarting the target
reaches all of them. Templates are looked up in the project's own directories first, then in the
built-in `templates/systemd/`, so a project overrides one file by giving it the same name.

Rendering is pure: no host is contacted, and the same inventory gives byte-identical units (no
timestamps), so an unchanged unit is detected as unchanged by its sha256.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from deploytool import systemd_quote as q
from deploytool.errors import InputError
from deploytool.inventory import NAMESPACE_ENV, App, Inventory, WorkerGroup
from deploytool.kinds import KINDS, Kind

# Inside the package: in a checkout `deploytool/templates` links to the top-level templates/ (their
# source), and a wheel holds copies (package data), so this one lookup serves both.
BUILTIN_TEMPLATES = Path(str(resources.files("deploytool") / "templates" / "systemd"))
WORKER_TEMPLATE = "worker@.service.j2"
TARGET_TEMPLATE = "workers.target.j2"
SYSTEM_UNIT_DIR = "/etc/systemd/system"
# Every rendered unit carries `X-Deploytool-App=<app>` (systemd ignores X- keys), so install and
# uninstall find an app's own units without guessing from names.
MARKER = "X-Deploytool-App"
# Relative to the deploy user's home directory (where an SSH session starts); see unit_dir().
USER_UNIT_DIR = ".config/systemd/user"


@dataclass(frozen=True)
class UnitFile:
    name: str
    content: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


def target_name(app: App) -> str:
    return f"{app.name}-workers.target"


def template_name(app: App, group: WorkerGroup) -> str:
    return f"{app.name}-{group.name}@.service"


def instances(app: App, group: WorkerGroup) -> list[str]:
    """The units to enable for `group`: `<app>-<group>@1.service` .. `@<processes>.service`."""
    return [f"{app.name}-{group.name}@{i}.service" for i in range(1, group.processes + 1)]


def unit_dir(app: App) -> str:
    """Where the units of `app` are installed.

    System mode: the absolute `/etc/systemd/system`. User mode: `.config/systemd/user`, relative to
    the deploy user's home; callers resolve it on the host as `$HOME/.config/systemd/user` (the
    home is not in the inventory, and `~` is not expanded inside quotes).
    """
    return SYSTEM_UNIT_DIR if app.systemd == "system" else USER_UNIT_DIR


def _fill(template: str, app: App, group: WorkerGroup, host: str) -> q.Arg:
    # `{instance}` must stay systemd's `%i`; the other placeholders are known now and are literal.
    values = {"app": app.name, "group": group.name, "host": host}
    parts: list[str | q.Spec] = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if field == "instance":
            parts.append(q.INSTANCE)
        elif field in values:
            parts.append(values[field])
        else:
            raise ValueError(f"unknown placeholder {{{field}}} in {template!r}")
    if all(isinstance(p, str) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    return q.Specifier(tuple(parts))


def _program(app: App, group: WorkerGroup, kind: Kind) -> list[str]:
    argv = list(group.command) if group.command else list(kind.program)
    # systemd takes an absolute path or a bare name looked up in its own fixed PATH; a relative
    # path like `bin/worker` means the file in the release, where the unit's WorkingDirectory is.
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        argv[0] = str(PurePosixPath(app.current_path) / argv[0])
    return argv


def exec_start(app: App, group: WorkerGroup, host: str) -> list[q.Arg]:
    """The worker's argv as data: program, concurrency, queues, grace, redis, per-instance args."""
    kind = KINDS[group.kind]
    argv: list[q.Arg] = [*_program(app, group, kind), *kind.subcommand]
    if kind.threads_flag is not None and group.threads is not None:
        argv += [kind.threads_flag, str(group.threads)]
    argv += kind.queue_flags(group.queues)
    if kind.timeout_flag is not None:
        argv += [kind.timeout_flag, str(group.grace * kind.timeout_scale)]
    if kind.redis_flag is not None and app.redis:
        argv += [kind.redis_flag, app.redis[0]]
    argv += [_fill(a, app, group, host) for a in kind.instance_args]
    return argv


def _environment(app: App, group: WorkerGroup) -> dict[str, str]:
    # App first, then the group (which overrides), then REDIS_URL unless either set it.
    env = {**app.environment, **group.environment}
    if app.redis and "REDIS_URL" not in env:
        env["REDIS_URL"] = app.redis[0]
    if app.redis_namespace is not None:
        # The key prefix for kinds that take one (Celery global_keyprefix, Dramatiq namespace): the
        # app reads it where it builds its broker (see README, "Sharing one Redis").
        env.setdefault(NAMESPACE_ENV, app.redis_namespace)
    return env


def _jinja(template_dirs: Sequence[Path]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*map(str, template_dirs), str(BUILTIN_TEMPLATES)]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # For project templates that add their own directives.
    env.filters["systemd_escape"] = q.escape_specifiers
    env.filters["exec_arg"] = q.exec_arg
    return env


def _header(inv: Inventory, host: str) -> str:
    # The file name only: the checkout's absolute path would make units differ between machines.
    return f"Generated by deploytool from inventory {inv.path.name} for host {host}. Do not edit."


def _worker_context(inv: Inventory, host: str, app: App, group: WorkerGroup) -> dict[str, Any]:
    kind = KINDS[group.kind]
    user_mode = app.systemd == "user"
    try:
        return {
            "header": _header(inv, host),
            "app": app,
            "group": group,
            "kind": kind,
            "host": inv.hosts[host],
            "user_mode": user_mode,
            "target": target_name(app),
            "type": kind.unit_type,
            "watchdog_sec": kind.watchdog_sec,
            "user": None if user_mode else (group.user or inv.hosts[host].user),
            "working_directory": q.escape_specifiers(app.current_path),
            "environment": [q.env_assignment(k, v) for k, v in _environment(app, group).items()],
            "environment_file": (
                q.escape_specifiers(app.env_file_path) if app.env_file_path is not None else None
            ),
            "exec_start": q.exec_line(exec_start(app, group, host)),
            "kill_signal": kind.stop_signal,
            "kill_mode": kind.kill_mode,
            "timeout_stop_sec": kind.timeout_stop_sec(group.grace),
            "syslog_identifier": f"{app.name}-{group.name}-%i",
        }
    except ValueError as e:
        raise InputError(f"{inv.path}: host {host}: apps.{app.name}.workers.{group.name}: {e}") from None


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as e:
        where = getattr(e, "filename", None) or name
        raise InputError(f"template {where}: {e}") from None


def render_app(inv: Inventory, host: str, app: App, template_dirs: Sequence[Path] = ()) -> list[UnitFile]:
    """The units of `app` on `host`: a template unit per worker group there, then the app's target."""
    env = _jinja(template_dirs)
    units = [
        UnitFile(template_name(app, g), _render(env, WORKER_TEMPLATE, _worker_context(inv, host, app, g)))
        for g in inv.groups_on(host, app)
    ]
    target = {
        "header": _header(inv, host),
        "app": app,
        "host": inv.hosts[host],
        "user_mode": app.systemd == "user",
        "wanted_by": "default.target" if app.systemd == "user" else "multi-user.target",
    }
    units.append(UnitFile(target_name(app), _render(env, TARGET_TEMPLATE, target)))
    marker = f"{MARKER}={app.name}"
    for unit in units:
        # Install and uninstall find an app's units by this line; a project template must keep it.
        if marker not in unit.content.splitlines():
            raise InputError(f"{inv.path}: host {host}: app {app.name}: unit {unit.name}: "
                             f"its template must keep the line `{marker}`")
    return units


def render_host(
    inv: Inventory, host: str, app_name: str | None = None, template_dirs: Sequence[Path] = ()
) -> list[UnitFile]:
    """The units of every app on `host`, or of `app_name` only."""
    if host not in inv.hosts:
        raise InputError(f"{inv.path}: no host {host!r} in the inventory")
    apps = inv.apps_on(host)
    if app_name is not None and app_name not in apps:
        raise InputError(f"{inv.path}: host {host}: app {app_name!r} does not run there")
    names = [app_name] if app_name is not None else list(apps)
    return [u for name in names for u in render_app(inv, host, apps[name], template_dirs)]
