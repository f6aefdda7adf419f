"""Inventories: YAML → merged per host (defaults → role → host) → validated, frozen, typed objects.

An inventory is `inventories/NAME.yml` or a directory `inventories/NAME/` holding `common.yml` (the
shared part), `roles/ROLE.yml` and `hosts/HOST.yml` (each merged over it, hieradata-style). Everything
is validated once, here; the rest of deploytool trusts these objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from deploytool.errors import InputError
from deploytool.kinds import KINDS, Queue

INVENTORY_DIR = Path(__file__).resolve().parent.parent / "inventories"


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
    # A git repository (a path on the machine running fab, or a URL for `git`); relative paths are
    # resolved against the inventory file's directory. A subdirectory of a repository works too.
    repository: Text
    revision: Text = "HEAD"


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
    redis_namespace: Name | None = None
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


def resolve_path(name_or_path: str) -> Path:
    """`sandbox` → inventories/sandbox.yml (or inventories/sandbox/); anything else is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yml", ".yaml") or candidate.is_dir() or "/" in name_or_path:
        return candidate
    for path in (INVENTORY_DIR / f"{name_or_path}.yml", INVENTORY_DIR / name_or_path):
        if path.exists():
            return path
    raise InputError(f"inventory {name_or_path!r}: no {INVENTORY_DIR}/{name_or_path}.yml nor directory")


def load_inventory(name_or_path: str | Path) -> Inventory:
    path = resolve_path(str(name_or_path))
    try:
        return _build(path, _read_layers(path))
    except InputError as e:
        raise InputError(_single_line(str(e))) from None


def _single_line(message: str) -> str:
    # Key names come from the file: escape any line break they hold (repr-style, as values are shown).
    return "".join(repr(c)[1:-1] if c in _BREAKS else c for c in message)


_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\0")


# --- reading and merging ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    file: Path
    data: dict[str, Any]


@dataclass(frozen=True)
class _Layers:
    common: _Layer
    roles: Mapping[str, _Layer]  # role → {apps: ...}
    hosts: Mapping[str, _Layer]  # host → host file (directory form) or the common file


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last one silently,
    so a second `processes:` would quietly win)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen and key != "<<":
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except OSError as e:
        raise InputError(f"{file}: cannot read: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(f"{file}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{file}: the top level must be a mapping (hosts:, apps:)")
    return data


def _read_layers(path: Path) -> _Layers:
    if path.is_dir():
        common = _Layer(path / "common.yml", _read_yaml(path / "common.yml"))
        roles = {f.stem: _Layer(f, _read_yaml(f)) for f in sorted((path / "roles").glob("*.yml"))}
        host_files = {f.stem: _Layer(f, _read_yaml(f)) for f in sorted((path / "hosts").glob("*.yml"))}
    else:
        if not path.exists():
            raise InputError(f"{path}: no such inventory file")
        common = _Layer(path, _read_yaml(path))
        roles, host_files = {}, {}
    _check_top(common, {"hosts", "apps", "roles"})
    for layer in roles.values():
        _check_top(layer, {"apps"})
    raw_roles = common.data.get("roles") or {}
    if not isinstance(raw_roles, dict):
        raise InputError(f"{common.file}: roles: must be a mapping of role name to overrides")
    for role, data in raw_roles.items():
        if not isinstance(data, dict):
            raise InputError(f"{common.file}: roles.{role}: must be a mapping (apps: ...)")
        roles = {**roles, str(role): roles.get(str(role), _Layer(common.file, data))}
    hosts_raw = common.data.get("hosts") or {}
    if not isinstance(hosts_raw, dict):
        raise InputError(f"{common.file}: hosts: must be a mapping of host name to settings")
    hosts: dict[str, _Layer] = {}
    for name, data in hosts_raw.items():
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{common.file}: host {name}: must be a mapping (address:, user:, ...)")
        hosts[str(name)] = _Layer(common.file, data)
    for name, layer in host_files.items():
        base = hosts.get(name)
        hosts[name] = _Layer(layer.file, _merge(base.data, layer.data) if base else layer.data)
    if not hosts:
        raise InputError(f"{common.file}: hosts: no hosts defined")
    return _Layers(common, roles, hosts)


def _check_top(layer: _Layer, allowed: set[str]) -> None:
    for key in layer.data:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise InputError(f"{layer.file}: {key}: unknown top-level key (expected {expected})")


def _merge(base: Any, over: Any) -> Any:
    """Deep-merge mappings; anything else in `over` replaces `base` (lists are not concatenated)."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = _merge(base.get(k), v) if k in base else v
        return merged
    return over


# --- validation --------------------------------------------------------------------------------


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def _first_loc(err: ValidationError) -> tuple[int | str, ...]:
    loc = err.errors(include_url=False)[0]["loc"]
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _one_line(err: ValidationError, prefix: str, key_prefix: str) -> InputError:
    first = err.errors(include_url=False)[0]
    loc = _first_loc(err)
    key = _loc((*key_prefix.split("."), *loc) if key_prefix else loc)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif isinstance(first.get("input"), str | int | float | bool):
        shown = repr(first["input"])
        msg = f"{msg} (got {shown[:60]})"
    return InputError(f"{prefix}: {key}: {msg}")


def _build(path: Path, layers: _Layers) -> Inventory:
    hosts: dict[str, Host] = {}
    for name, layer in layers.hosts.items():
        fields = {k: v for k, v in layer.data.items() if k != "apps"}
        try:
            hosts[name] = Host.model_validate({**fields, "name": name})
        except ValidationError as e:
            raise _one_line(e, f"{layer.file}: host {name}", "") from None
        _resolve_local_paths(hosts, name, layer.file)

    apps_raw = layers.common.data.get("apps") or {}
    if not isinstance(apps_raw, dict):
        raise InputError(f"{layers.common.file}: apps: must be a mapping of app name to settings")
    apps: dict[str, App] = {}
    for name, data in apps_raw.items():
        if not isinstance(data, dict):
            raise InputError(
                f"{layers.common.file}: app {name}: must be a mapping (source:, deploy_to:, ...)"
            )
        apps[str(name)] = _validate_app(str(name), data, f"{layers.common.file}: app {name}", name)

    for role, layer in layers.roles.items():
        _check_overrides(layer, f"role {role}", apps_raw)
    resolved: dict[str, dict[str, App]] = {}
    for host_name, host in hosts.items():
        host_layer = layers.hosts[host_name]
        over_layers = [layers.roles[r] for r in host.roles if r in layers.roles] + [host_layer]
        _check_overrides(host_layer, f"host {host_name}", apps_raw)
        resolved[host_name] = {}
        for app_name, data in apps_raw.items():
            merged = data
            for layer in over_layers:
                over = (layer.data.get("apps") or {}).get(app_name)
                if over is not None:
                    merged = _merge(merged, over)
            try:
                app = App.model_validate({**merged, "name": app_name})
            except ValidationError as e:
                file = _blame(over_layers, app_name, _first_loc(e)) or _origin(over_layers, layers.common)
                raise _one_line(e, f"{file}: host {host_name}", f"apps.{app_name}") from None
            if set(app.roles) & set(host.roles):
                resolved[host_name][app_name] = _with_local_source(app, path)
    inventory = Inventory(path=path, hosts=hosts, apps=apps, resolved=resolved)
    _check_shared_redis(inventory)
    return inventory


def _check_overrides(layer: _Layer, who: str, apps_raw: Mapping[str, Any]) -> None:
    over = layer.data.get("apps") or {}
    if not isinstance(over, dict):
        raise InputError(f"{layer.file}: {who}: apps: must be a mapping")
    for app_name, data in over.items():
        if app_name not in apps_raw:
            raise InputError(f"{layer.file}: {who}: apps.{app_name}: no such app in apps:")
        if data is not None and not isinstance(data, dict):
            raise InputError(f"{layer.file}: {who}: apps.{app_name}: must be a mapping of overrides")


def _blame(over_layers: list[_Layer], app_name: str, loc: tuple[int | str, ...]) -> Path | None:
    # The layer that sets the deepest part of the failing key (the most specific one on a tie).
    best, depth = None, 0
    for layer in over_layers:
        node, d = (layer.data.get("apps") or {}).get(app_name), 0
        for part in loc:
            inside = node if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else ()
            if part not in inside:
                break
            node = node[part]  # type: ignore[index]
            d += 1
        if d and d >= depth:
            best, depth = layer.file, d
    return best


def _origin(over_layers: list[_Layer], common: _Layer) -> Path:
    # Name the most specific file that overrides anything for this host, else the common file.
    for layer in reversed(over_layers):
        if layer.data.get("apps"):
            return layer.file
    return common.file


def _validate_app(name: str, data: dict[str, Any], prefix: str, app_name: str) -> App:
    try:
        return App.model_validate({**data, "name": name})
    except ValidationError as e:
        raise _one_line(e, prefix, f"apps.{app_name}") from None


def _resolve_local_paths(hosts: dict[str, Host], name: str, file: Path) -> None:
    host, base = hosts[name], file.parent
    updates = {}
    for key in ("known_hosts", "identity"):
        value = getattr(host, key)
        if value is None:
            continue
        try:
            expanded = Path(value).expanduser()
        except RuntimeError:
            raise InputError(f"{file}: host {name}: {key}: cannot expand {value!r}") from None
        updates[key] = str(expanded if expanded.is_absolute() else (base / value).resolve())
    if updates:
        hosts[name] = host.model_copy(update=updates)


def _with_local_source(app: App, inventory_path: Path) -> App:
    repo = app.source.repository
    if "://" in repo or repo.startswith("/") or ":" in repo.split("/")[0]:
        return app
    base = inventory_path if inventory_path.is_dir() else inventory_path.parent
    source = app.source.model_copy(update={"repository": str((base / repo).resolve())})
    return app.model_copy(update={"source": source})


def _redis_targets(app: App) -> Iterator[tuple[str, int, str]]:
    for url in app.redis:
        parts = urlsplit(url)
        db = (parts.path or "/0").strip("/") or "0"
        yield ((parts.hostname or parts.path).lower(), parts.port or 6379, db)


def _check_shared_redis(inv: Inventory) -> None:
    """Two apps on one Redis DB without distinct namespaces steal each other's jobs (Sidekiq keys are
    unprefixed), so that is refused here rather than discovered in production."""
    # Every variant of every app: the shared definition and each host's (overrides may change redis).
    variants = [*inv.apps.values(), *(a for apps in inv.resolved.values() for a in apps.values())]
    seen: dict[tuple[str, int, str], list[App]] = {}
    for app in variants:
        for target in dict.fromkeys(_redis_targets(app)):
            for other in seen.get(target, []):
                if other.name != app.name and (
                    other.redis_namespace is None
                    or app.redis_namespace is None
                    or other.redis_namespace == app.redis_namespace
                ):
                    host, port, db = target
                    raise InputError(
                        f"{inv.path}: apps {other.name} and {app.name}: redis: both use {host}:{port}/{db} "
                        "without distinct redis_namespace (give each app its own Redis or DB number)"
                    )
            seen.setdefault(target, []).append(app)
