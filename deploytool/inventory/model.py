"""The inventory's typed model: hosts, apps and worker groups as frozen, validated objects.

Validators here refuse values that would change a unit file's meaning (newlines, NUL) and settings a
worker kind does not have; deploytool.inventory.load builds these objects from YAML."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from deploytool import unit_settings
from deploytool.kinds import KINDS, Kind, Queue

# The environment variable that carries an app's redis_namespace to its workers.
NAMESPACE_ENV = "DEPLOYTOOL_REDIS_NAMESPACE"


def _plain(value: str) -> str:
    # A newline or NUL would end a unit-file line early and smuggle in directives.
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("must not contain a newline or NUL")
    return value


Text = Annotated[str, AfterValidator(_plain)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# Strict: YAML reads `processes: yes` as True and pydantic would take it for 1; "3" and 2.0 are refused too.
Int = Annotated[int, Field(strict=True)]


def _scalar_to_str(value: Any) -> Any:
    # YAML turns `on`, `5` and `1.0` into bool/int/float; environment values are strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[Text, BeforeValidator(_scalar_to_str)]


def _relative(value: str) -> str:
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError("must be a path relative to the release, without '..'")
    return value


RelPath = Annotated[Text, AfterValidator(_relative)]


def _absolute(value: str) -> str:
    p = PurePosixPath(value)
    if not p.is_absolute() or ".." in p.parts or str(p) == "/":
        raise ValueError("must be an absolute path below /, without '..'")
    return str(p)


AbsPath = Annotated[Text, AfterValidator(_absolute)]


def _path_entry(value: str) -> str:
    # One directory of PATH: a `:` would split it in two.
    if ":" in value:
        raise ValueError("a PATH directory must not contain ':'")
    return value


# Directories put before systemd's default PATH, for the units and every command run for the app.
SearchPath = tuple[Annotated[AbsPath, AfterValidator(_path_entry)], ...]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


def _parse_queue(value: Any) -> Any:
    # `default` or `{critical: 2}` (a name with a weight).
    if isinstance(value, str):
        return Queue(value)
    if isinstance(value, dict) and len(value) == 1:
        [(name, weight)] = value.items()
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ValueError(f"weight of queue {name!r} must be a whole number >= 1")
        return Queue(str(name), weight)
    if isinstance(value, Queue):
        return value
    raise ValueError("a queue is a name or {name: weight}")


def _queue_name(q: Queue) -> Queue:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", q.name):
        raise ValueError(f"queue name {q.name!r} may hold only letters, digits and _.:-")
    return q


QueueItem = Annotated[Queue, BeforeValidator(_parse_queue), AfterValidator(_queue_name)]


def _setting_value(value: Any) -> Any:
    # YAML reads `yes` as True and `512` as an int; unit files want `yes` and `512`.
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return value


def _pattern(setting: str) -> Any:
    def check(value: str) -> str:
        problem = unit_settings.SERVICE_SETTINGS[setting].check(value)
        if problem is not None:
            raise ValueError(f"must be {problem}")
        return value

    return AfterValidator(check)


MemorySize = Annotated[Text, BeforeValidator(_setting_value), _pattern("MemoryMax")]
CPUQuota = Annotated[Text, _pattern("CPUQuota")]
SettingValue = Annotated[Text, BeforeValidator(_setting_value)]


def _one_place(environment: Mapping[str, str], secrets: Mapping[str, str]) -> None:
    # A name in both would leave it to the merge order whether its value is printed.
    both = sorted(set(environment) & set(secrets))
    if both:
        raise ValueError(f"{', '.join(both)}: in both `environment` and `secrets` (keep each name in one)")


class WorkerGroup(_Model):
    """N identical worker processes of one kind: systemd instances `<app>-<group>@1..N`."""

    name: Name = ""
    kind: Literal["sidekiq", "celery", "rq", "dramatiq", "sneakers", "command"]
    processes: Annotated[Int, Field(ge=0, le=256)] = 1
    threads: Annotated[Int, Field(ge=1, le=1024)] | None = None
    queues: tuple[QueueItem, ...] = ()
    timeout: Annotated[Int, Field(ge=1, le=86400)] | None = None
    # Seconds a restarted worker must stay up, same process, before it counts as ready (besides what
    # its system tells); 0: no wait. Default: the kind's (deploytool.kinds, `command`: 5).
    ready_after: Annotated[Int, Field(ge=0, le=3600)] | None = None
    environment: dict[EnvName, EnvValue] = Field(default_factory=dict)
    # Like `environment:` (same file on the host), but masked in everything deploytool prints.
    secrets: dict[EnvName, EnvValue] = Field(default_factory=dict)
    command: tuple[Text, ...] | None = None
    # A process type of the app's Procfile: the command comes from its line at the deployed revision
    # (deploytool.procfile fills `command` in before anything renders a unit).
    procfile: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)] | None = None
    # The system user the workers run as; default: the host's SSH user, never root implicitly.
    user: Name | None = None
    roles: tuple[Name, ...] | None = None
    path: SearchPath | None = None  # replaces the app's `path` for this group
    # A config file for the kind (Sidekiq: `-C`), relative to the release; threads and queues set in
    # the inventory still win over it (command-line flags override the file).
    config: RelPath | None = None
    # Limits, as the init-script class of a configuration-management tool set them.
    memory_max: MemorySize | None = None
    cpu_quota: CPUQuota | None = None
    nice: Annotated[Int, Field(ge=-20, le=19)] | None = None
    limit_nofile: Annotated[Int, Field(ge=1, le=1073741816)] | None = None
    # Further [Service] settings from an allow list (deploytool.unit_settings); they override the
    # sandboxing defaults of deploytool.units.
    systemd: dict[str, SettingValue] = Field(default_factory=dict)

    @field_validator("systemd")
    @classmethod
    def _allowed_settings(cls, value: dict[str, str]) -> dict[str, str]:
        for key, setting in value.items():
            problem = unit_settings.check(key, setting)
            if problem is not None:
                raise ValueError(problem)
        return value

    @model_validator(mode="before")
    @classmethod
    def _procfile_kind(cls, value: Any) -> Any:
        # A Procfile line is a plain command unless the group says which worker system it starts.
        if isinstance(value, dict) and value.get("procfile") is not None and "kind" not in value:
            return {**value, "kind": "command"}
        return value

    @model_validator(mode="after")
    def _secrets_apart(self) -> WorkerGroup:
        _one_place(self.environment, self.secrets)
        return self

    @property
    def variables(self) -> dict[str, str]:
        """`environment:` and `secrets:` together: what the group's environment file gets."""
        return {**self.environment, **self.secrets}

    @model_validator(mode="after")
    def _fits_kind(self) -> WorkerGroup:
        kind = KINDS[self.kind]
        if self.procfile is not None:
            # `command` is filled in from the Procfile later; given here it would say something else.
            if "command" in self.model_fields_set:
                raise ValueError("`command` and `procfile` exclude each other: the command is the Procfile's")
            for key in ("threads", "config"):
                if getattr(self, key) is not None:
                    raise ValueError(f"`{key}` is not added to a Procfile's command: write it in the Procfile")
            return self._fits_queues(kind)
        if self.config is not None and kind.config_flag is None:
            raise ValueError(f"`config` is not supported by kind {self.kind}")
        if kind.requires_command and not self.command:
            raise ValueError(f"kind {self.kind} needs `command`")
        if self.command is not None and not self.command:
            raise ValueError("`command` must not be empty")
        if self.threads is not None and kind.threads_flag is None:
            raise ValueError(f"`threads` is not supported by kind {self.kind}: add processes instead")
        return self._fits_queues(kind)

    def _fits_queues(self, kind: Kind) -> WorkerGroup:
        if self.queues and not kind.supports_queues:
            raise ValueError(f"`queues` is not supported by kind {self.kind}")
        if not kind.supports_weights and any(q.weight is not None for q in self.queues):
            raise ValueError(f"queue weights are not supported by kind {self.kind}")
        return self

    @property
    def grace(self) -> int:
        """Seconds a stopping worker may take to finish running jobs."""
        return self.timeout if self.timeout is not None else KINDS[self.kind].default_timeout

    @property
    def ready_wait(self) -> int:
        """Seconds a restarted worker must stay up before it counts as ready."""
        return self.ready_after if self.ready_after is not None else KINDS[self.kind].ready_after


def _hook_shorthand(value: Any) -> Any:
    # A hook is `{command: ..., once: true}`, or just its command.
    return {"command": value} if isinstance(value, str) else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class Hook(_Model):
    """A command run in the new release with the app's environment, like a build step."""

    command: Annotated[Text, AfterValidator(_not_blank)]
    # Only on one host of the app (migrations): the first host in inventory order that is deployed.
    once: Annotated[bool, Field(strict=True)] = False


HookList = tuple[Annotated[Hook, BeforeValidator(_hook_shorthand)], ...]


class Hooks(_Model):
    """Commands at named points of a deploy. Before the switch a failing hook fails the host like a build
    step (nothing changed); after the restart the release is live and the failure is reported."""

    after_build: HookList = ()
    before_switch: HookList = ()
    after_restart: HookList = ()

    @model_validator(mode="before")
    @classmethod
    def _known_points(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if key not in cls.model_fields:
                    raise ValueError(f"unknown hook point {key!r} (known: {', '.join(cls.model_fields)})")
        return value

    def at(self, point: str, once: bool) -> list[Hook]:
        """The hooks of `point` this host runs: all of them on the `once` host, else those not `once`."""
        hooks: tuple[Hook, ...] = getattr(self, point)
        return [h for h in hooks if once or not h.once]

    def at_once(self) -> list[Hook]:
        """Every `once: true` hook, of any point."""
        return [h for point in HOOK_POINTS for h in getattr(self, point) if h.once]


HOOK_POINTS = tuple(Hooks.model_fields)


class Source(_Model):
    strategy: Literal["archive", "git"] = "archive"
    # A git repository: a path on the machine running fab (a work tree, a subdirectory of one, or a
    # bare repository; relative paths are resolved against the inventory file's directory) or a URL.
    repository: Text
    # A branch, tag or commit.
    revision: Text = "HEAD"

    @property
    def is_url(self) -> bool:
        """`https://...`, `ssh://...`, `file://...` or scp-like `git@host:path` (a colon before any slash)."""
        return "://" in self.repository or ":" in self.repository.split("/")[0]


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ValueError(f"{value!r} is not a redis:// URL")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if parts.scheme != "unix" and not re.fullmatch(r"/?|/\d+", parts.path):
        raise ValueError("the path must be a DB number (/0)")
    return value


RedisURL = Annotated[Text, AfterValidator(_redis_url)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class App(_Model):
    """One application as deployed to one host (after that host's overrides)."""

    name: Name = ""
    roles: tuple[Name, ...] = ("app",)
    source: Source
    deploy_to: AbsPath
    keep_releases: Annotated[Int, Field(ge=1, le=100)] = 5
    linked_files: tuple[RelPath, ...] = ()
    linked_dirs: tuple[RelPath, ...] = ()
    build: tuple[Text, ...] = ()
    hooks: Hooks = Field(default_factory=Hooks)
    environment: dict[EnvName, EnvValue] = Field(default_factory=dict)
    secrets: dict[EnvName, EnvValue] = Field(default_factory=dict)  # as environment:, masked when printed
    # Relative to shared/ unless absolute; loaded by the worker units and by build commands.
    env_file: Text | None = None
    path: SearchPath = ()
    redis: Annotated[tuple[RedisURL, ...], BeforeValidator(_one_or_many)] = ()
    # A key prefix for the kinds that take one (Celery, Dramatiq): passed to the workers as
    # DEPLOYTOOL_REDIS_NAMESPACE. Needed when apps share one Redis DB.
    redis_namespace: Name | None = None
    # This app's Sidekiq/RQ workers (fixed key names, no prefix) knowingly share their Redis DB with
    # another app: allowed only with queue names of their own.
    redis_shared: Annotated[bool, Field(strict=True)] = False
    systemd: Literal["system", "user"] = "system"
    # Seconds each stage of a deploy or worker task may take on a host (a build included).
    timeout: Annotated[float, Field(strict=True, gt=0, le=86400)] = 600.0
    # Seconds a deploy watches each batch (`--canary`, `--soak`) before the next: deploytool.canary.
    soak: Annotated[float, Field(strict=True, ge=0, le=86400)] = 0.0
    # Commands run on a soaked batch's hosts in the workers' runtime context: exit 0 = healthy.
    health: tuple[Annotated[Text, AfterValidator(_not_blank)], ...] = ()
    workers: dict[Name, WorkerGroup] = Field(default_factory=dict)

    @field_validator("workers", mode="before")
    @classmethod
    def _name_groups(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({**v, "name": k} if isinstance(v, dict) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _secrets_apart(self) -> App:
        _one_place(self.environment, self.secrets)
        return self

    @property
    def variables(self) -> dict[str, str]:
        """`environment:` and `secrets:` together: what the app's environment files get."""
        return {**self.environment, **self.secrets}

    @property
    def shared_path(self) -> str:
        return f"{self.deploy_to}/shared"

    @property
    def current_path(self) -> str:
        return f"{self.deploy_to}/current"

    @property
    def env_file_path(self) -> str | None:
        if self.env_file is None:
            return None
        return self.env_file if self.env_file.startswith("/") else f"{self.shared_path}/{self.env_file}"


class Host(_Model):
    name: Name = ""
    address: Text
    port: Annotated[Int, Field(ge=1, le=65535)] = 22
    user: Name = "deploy"
    roles: tuple[Name, ...] = ()
    known_hosts: Text | None = None
    identity: Text | None = None
    connect_timeout: Annotated[float, Field(strict=True, gt=0, le=600)] = 10.0
    # Seconds between keepalives; a host that answers none for three of them counts as lost.
    keepalive: Annotated[float, Field(strict=True, ge=0.5, le=60)] = 5.0
    # Apply ~/.ssh/config and /etc/ssh/ssh_config (ProxyCommand, ...): off unless asked for.
    ssh_config: Annotated[bool, Field(strict=True)] = False
    # Another host of the inventory this one is reached through (a bastion): its address, port, user,
    # key and known_hosts are used for the hop.
    jump: Name | None = None
    # The jump host, itself with its own jump resolved: set by deploytool.inventory.load, never from YAML.
    _via: Host | None = PrivateAttr(default=None)

    @property
    def route(self) -> tuple[Host, ...]:
        """The jump hosts to pass through on the way here, the first hop first; empty: direct."""
        return () if self._via is None else (*self._via.route, self._via)

    def through(self, via: Host) -> Host:
        """This host, reached through `via` (its `jump`, resolved)."""
        copy = self.model_copy()
        copy._via = via
        return copy


@dataclass(frozen=True)
class Inventory:
    """A validated inventory: hosts, and each app as resolved for each host it runs on."""

    path: Path
    hosts: Mapping[str, Host]
    apps: Mapping[str, App]  # shared definitions, before host overrides
    resolved: Mapping[str, Mapping[str, App]]  # host → app → App with that host's overrides

    def apps_on(self, host: str) -> Mapping[str, App]:
        return self.resolved[host]

    def hosts_for_app(self, app: str) -> list[str]:
        return [h for h, apps in self.resolved.items() if app in apps]

    def groups_on(self, host: str, app: App) -> list[WorkerGroup]:
        """The worker groups of `app` that run on `host` (a group may narrow the app's roles)."""
        roles = set(self.hosts[host].roles)
        return [g for g in app.workers.values() if g.roles is None or roles & set(g.roles)]
