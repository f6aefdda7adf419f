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
    field_validator,
    model_validator,
)

from deploytool.kinds import KINDS, Queue

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


class WorkerGroup(_Model):
    """N identical worker processes of one kind: systemd instances `<app>-<group>@1..N`."""

    name: Name = ""
    kind: Literal["sidekiq", "celery", "rq", "dramatiq", "sneakers", "command"]
    processes: Annotated[Int, Field(ge=0, le=256)] = 1
    threads: Annotated[Int, Field(ge=1, le=1024)] | None = None
    queues: tuple[QueueItem, ...] = ()
    timeout: Annotated[Int, Field(ge=1, le=86400)] | None = None
    environment: dict[EnvName, EnvValue] = Field(default_factory=dict)
    command: tuple[Text, ...] | None = None
    user: Name | None = None
    roles: tuple[Name, ...] | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> WorkerGroup:
        kind = KINDS[self.kind]
        if kind.requires_command and not self.command:
            raise ValueError(f"kind {self.kind} needs `command`")
        if self.command is not None and not self.command:
            raise ValueError("`command` must not be empty")
        if self.threads is not None and kind.threads_flag is None:
            raise ValueError(f"`threads` is not supported by kind {self.kind}: add processes instead")
        if self.queues and not kind.supports_queues:
            raise ValueError(f"`queues` is not supported by kind {self.kind}")
        if not kind.supports_weights and any(q.weight is not None for q in self.queues):
            raise ValueError(f"queue weights are not supported by kind {self.kind}")
        return self

    @property
    def grace(self) -> int:
        """Seconds a stopping worker may take to finish running jobs."""
        return self.timeout if self.timeout is not None else KINDS[self.kind].default_timeout


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
    environment: dict[EnvName, EnvValue] = Field(default_factory=dict)
    # Relative to shared/ unless absolute; loaded by the worker units and by build commands.
    env_file: Text | None = None
    redis: Annotated[tuple[RedisURL, ...], BeforeValidator(_one_or_many)] = ()
    # A key prefix for the kinds that take one (Celery, Dramatiq): passed to the workers as
    # DEPLOYTOOL_REDIS_NAMESPACE. Needed when apps share one Redis DB.
    redis_namespace: Name | None = None
    # This app's Sidekiq/RQ workers (fixed key names, no prefix) knowingly share their Redis DB with
    # another app: allowed only with queue names of their own.
    redis_shared: Annotated[bool, Field(strict=True)] = False
    systemd: Literal["system", "user"] = "system"
    workers: dict[Name, WorkerGroup] = Field(default_factory=dict)

    @field_validator("workers", mode="before")
    @classmethod
    def _name_groups(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({**v, "name": k} if isinstance(v, dict) else v) for k, v in value.items()}
        return value

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
