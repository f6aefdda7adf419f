"""Rendering systemd units for worker groups: one template unit per group, one target per app.

`<app>-<group>@.service` is instantiated as `<app>-<group>@1..N.service` (N = processes); every
instance is `PartOf=` and `WantedBy=` `<app>-workers.target`, so stopping or restarting the target
reaches all of them. Templates are looked up in the project's own directories first, then in the
built-in `templates/systemd/`, so a project overrides one file by giving it the same name.

Rendering is pure: no host is contacted, and the same inventory gives byte-identical units (no
timestamps), so an unchanged unit is detected as unchanged by its sha256.
"""

from __future__ import annotations

import functools
import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from deploytool import systemd_quote as q
from deploytool import unit_settings
from deploytool.errors import InputError
from deploytool.inventory import NAMESPACE_ENV, App, Inventory, WorkerGroup
from deploytool.kinds import KINDS, Kind

# An installed deploytool carries copies inside the package (setup.py copies them at build time); a
# checkout, editable installs included, reads their source, the top-level templates/systemd/.
_PACKAGED = Path(str(resources.files("deploytool") / "templates" / "systemd"))
_SOURCE = Path(__file__).resolve().parent.parent / "templates" / "systemd"
BUILTIN_TEMPLATES = _PACKAGED if _PACKAGED.is_dir() else _SOURCE
WORKER_TEMPLATE = "worker@.service.j2"
TARGET_TEMPLATE = "workers.target.j2"
SYSTEM_UNIT_DIR = "/etc/systemd/system"
# Every rendered unit carries `X-Deploytool-App=<app>` (systemd ignores X- keys), so install and
# uninstall find an app's own units without guessing from names.
MARKER = "X-Deploytool-App"
# Relative to the deploy user's home directory (where an SSH session starts); see unit_dir().
USER_UNIT_DIR = ".config/systemd/user"
# Environment files (the inventory's `environment:` and `secrets:`), one per worker group: see environment_file().
SYSTEM_ENV_DIR = "/etc/deploytool"
USER_ENV_DIR = ".config/deploytool"
# Files workers create are not world-readable (logs, caches, uploads in shared/).
UMASK = "0027"


@dataclass(frozen=True)
class EnvFile:
    """A group's environment file: its host path and its content (secret: never printed)."""

    path: str
    content: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


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
    if group.procfile is not None:
        if not group.command:
            raise ValueError(f"worker group {group.name}: its Procfile command was not read (deploytool.procfile)")
        # The Procfile's line is the whole command (subcommand, concurrency and queues included); only
        # what deploytool needs to stop and quiet the worker is added below.
        argv: list[q.Arg] = [*_program(app, group, kind)]
    else:
        argv = [*_program(app, group, kind), *kind.subcommand]
        if kind.config_flag is not None and group.config is not None:
            argv += [kind.config_flag, group.config]  # relative to the release, the WorkingDirectory
        if kind.threads_flag is not None and group.threads is not None:
            argv += [kind.threads_flag, str(group.threads)]
        argv += kind.queue_flags(group.queues)
    if kind.timeout_flag is not None:
        argv += [kind.timeout_flag, str(group.grace * kind.timeout_scale)]
    argv += [_fill(a, app, group, host) for a in kind.instance_args]
    return argv


# systemd's own PATH for services (system and user managers alike, systemd 252 on Debian 12).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def search_path(app: App, group: WorkerGroup | None = None) -> str | None:
    """PATH with the inventory's `path:` directories first (the group's replace the app's), or None:
    systemd's default, which units and deploytool's commands then share without naming it."""
    dirs = group.path if group is not None and group.path is not None else app.path
    return ":".join([*dirs, DEFAULT_PATH]) if dirs else None


def environment(app: App, group: WorkerGroup) -> dict[str, str]:
    """The inventory's environment for the group's workers: PATH from `path:`, the app's, then the
    group's (which overrides), then REDIS_URL (and the kind's own variable for it) unless either set it."""
    path = search_path(app, group)
    env = {**({"PATH": path} if path else {}), **app.variables, **group.variables}
    if app.redis:
        env.setdefault("REDIS_URL", app.redis[0])
        redis_env = KINDS[group.kind].redis_env
        if redis_env is not None:
            env.setdefault(redis_env, app.redis[0])
    if app.redis_namespace is not None:
        # The key prefix for kinds that take one (Celery global_keyprefix, Dramatiq namespace): the
        # app reads it where it builds its broker (see README, "Sharing one Redis").
        env.setdefault(NAMESPACE_ENV, app.redis_namespace)
    return env


def environment_dir(app: App) -> str:
    """Where the app's environment files live on the host (user mode: `$HOME/...`, for a shell)."""
    if app.systemd == "user":
        return f"$HOME/{USER_ENV_DIR}/{app.name}"
    return f"{SYSTEM_ENV_DIR}/{app.name}"


def environment_file(app: App, group: WorkerGroup) -> str:
    """The host path of the group's environment file (user mode: `$HOME/...`, for a shell).

    The inventory's `environment:` and `secrets:` values go there, not into the world-readable unit: system mode
    root:root 0600 (systemd reads EnvironmentFile= as root before it drops privileges), user mode
    0600 in the deploy user's home."""
    return f"{environment_dir(app)}/{group.name}.env"


def _unit_path(path: str) -> str:
    # A host path as a unit names it: `%h` is the user manager's home, `%` otherwise literal.
    if path.startswith("$HOME/"):
        return "%h/" + q.escape_specifiers(path.removeprefix("$HOME/"))
    return q.escape_specifiers(path)


@dataclass(frozen=True)
class Runtime:
    """How a group's workers run, for the units and for app commands run like a worker (systemd-run)."""

    systemd: str  # "system" or "user": which manager runs them
    user: str | None  # User=; None in user mode (the user manager's own user)
    working_directory: str  # the release (`current`), a literal path
    # Host paths in load order (a later file wins); user mode `$HOME/...`, which a shell expands.
    environment_files: tuple[str, ...]
    umask: str  # UMask=


def runtime(inv: Inventory, host: str, app: App, group: WorkerGroup) -> Runtime:
    files = [environment_file(app, group)] if environment(app, group) else []
    if app.env_file_path is not None:
        # The operator's shared env file comes last, so it wins over the inventory's environment.
        files.append(app.env_file_path)
    return Runtime(
        systemd=app.systemd,
        user=None if app.systemd == "user" else (group.user or inv.hosts[host].user),
        working_directory=app.current_path,
        environment_files=tuple(files),
        umask=UMASK,
    )


def environment_files(inv: Inventory, host: str, app: App) -> list[EnvFile]:
    """The environment file of every group of `app` on `host` that has any environment."""
    return [
        EnvFile(environment_file(app, g), q.env_file(env))
        for g in inv.groups_on(host, app)
        if (env := environment(app, g))
    ]


# Restart a worker whatever made it exit, after a pause, for ever (the unit sets no start limit): a
# worker whose broker is down at boot keeps retrying and works as soon as the broker is back.
RESTART = (("Restart", "always"), ("RestartSec", "5"))

# What a worker needs is its release (read), shared/ (write), the network and its own processes; what
# it is denied by default is everything else systemd can take away without breaking Ruby or Python
# workers. Each can be changed per group in `systemd:` (deploytool.unit_settings).
SANDBOXING = (
    ("NoNewPrivileges", "yes"),  # no setuid: not even the deploy user's sudo rights
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateMounts", "yes"),
    ("ProtectSystem", "strict"),  # the whole file system read-only ...
    ("ReadWritePaths", "{shared}"),  # ... except shared/ (log/, tmp/ and the other linked dirs)
    ("ProtectHome", "read-only"),  # rbenv/pyenv in a home stay usable
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),  # other users' processes are not listed
    ("RestrictSUIDSGID", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("LockPersonality", "yes"),
    ("RemoveIPC", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
    ("CapabilityBoundingSet", ""),  # not for `user: root`, who asked for root's powers
)
# A user manager cannot set up mount namespaces for its services (no privileges): in user mode only
# what works through seccomp and no_new_privs applies.
USER_MODE_SANDBOXING = frozenset({
    "NoNewPrivileges", "RestrictSUIDSGID", "RestrictRealtime", "LockPersonality", "SystemCallArchitectures",
})


def _sandboxing(app: App, rt: Runtime) -> list[tuple[str, str]]:
    out = []
    for key, value in SANDBOXING:
        if app.systemd == "user" and key not in USER_MODE_SANDBOXING:
            continue
        if key == "CapabilityBoundingSet" and rt.user == "root":
            continue
        out.append((key, value.format(shared=q.escape_specifiers(app.shared_path))))
    return out


def service_settings(inv: Inventory, host: str, app: App, group: WorkerGroup) -> list[tuple[str, str]]:
    """[Service] settings beyond how the worker is started and stopped, as (key, value) in unit syntax:
    restart policy, sandboxing, limits, then the group's own `systemd:` settings, which replace ours
    of the same name. For the units and for `systemd-run -p KEY=VALUE`."""
    settings = dict([*RESTART, *_sandboxing(app, runtime(inv, host, app, group))])
    limits = {"MemoryMax": group.memory_max, "CPUQuota": group.cpu_quota,
              "Nice": None if group.nice is None else str(group.nice),
              "LimitNOFILE": None if group.limit_nofile is None else str(group.limit_nofile)}
    settings.update({k: v for k, v in limits.items() if v is not None})
    for key, value in group.systemd.items():
        settings.pop(key, None)  # placed as the group wrote them, after ours
        setting = unit_settings.SERVICE_SETTINGS[key]
        settings[key] = q.escape_specifiers(value) if setting.specifiers else q.setting_value(value)
    return list(settings.items())


def _jinja(template_dirs: Sequence[Path]) -> jinja2.Environment:
    return _environment(tuple(str(d) for d in template_dirs))


@functools.lru_cache(maxsize=16)
def _environment(template_dirs: tuple[str, ...]) -> jinja2.Environment:
    """One environment per set of template directories, for the whole run: a deploy renders the units of
    every host several times (plan, recovery, dry-run diff), and compiling the templates afresh each
    time was a large share of the controller's CPU at 32 hosts. Templates are read once (no reload)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*template_dirs, str(BUILTIN_TEMPLATES)]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=False,
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
    rt = runtime(inv, host, app, group)
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
            "user": rt.user,
            "working_directory": q.escape_specifiers(rt.working_directory),
            "environment_files": [_unit_path(f) for f in rt.environment_files],
            "umask": rt.umask,
            "service_settings": service_settings(inv, host, app, group),
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
