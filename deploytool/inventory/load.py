"""Building a validated Inventory from an inventory's layers: merge per host, validate, and turn every
problem into one line naming the file, host/app/group and key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from deploytool.errors import InputError
from deploytool.inventory.layers import Layer, Layers, merge, read_layers
from deploytool.inventory.model import App, Host, Inventory
from deploytool.kinds import KINDS, Queue, RedisKeys


def resolve_path(name_or_path: str, project: Path | None = None) -> Path:
    """`production` → <project>/inventories/production.yml (or inventories/production/); anything that
    looks like a path (a `/`, a .yml suffix, an existing directory) is taken as one, from the working
    directory. The project defaults to the working directory (see deploytool.project)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yml", ".yaml") or candidate.is_dir() or "/" in name_or_path:
        return candidate
    inventories = (project or Path.cwd()) / "inventories"
    for path in (inventories / f"{name_or_path}.yml", inventories / name_or_path):
        if path.exists():
            return path
    raise InputError(f"inventory {name_or_path!r}: no {inventories}/{name_or_path}.yml nor directory")


def load_inventory(name_or_path: str | Path, project: Path | None = None) -> Inventory:
    path = resolve_path(str(name_or_path), project)
    try:
        return _build(path, read_layers(path))
    except InputError as e:
        raise InputError(_single_line(str(e))) from None


def _single_line(message: str) -> str:
    # Key names come from the file: escape any line break they hold (repr-style, as values are shown).
    return "".join(repr(c)[1:-1] if c in _BREAKS else c for c in message)


_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\0")


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
    elif isinstance(first.get("input"), str | int | float | bool) and "secrets" not in loc:
        # A value under `secrets:` is never echoed, not even a bad one.
        shown = repr(first["input"])
        msg = f"{msg} (got {shown[:60]})"
    return InputError(f"{prefix}: {key}: {msg}")


def _build(path: Path, layers: Layers) -> Inventory:
    hosts: dict[str, Host] = {}
    for name, layer in layers.hosts.items():
        fields = {k: v for k, v in layer.data.items() if k != "apps"}
        try:
            hosts[name] = Host.model_validate({**fields, "name": name})
        except ValidationError as e:
            raise _one_line(e, f"{layer.file}: host {name}", "") from None
        _resolve_local_paths(hosts, name, layer.file)

    hosts = _resolve_jumps(hosts, layers)

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
                    merged = merge(merged, over)
            try:
                app = App.model_validate({**merged, "name": app_name})
            except ValidationError as e:
                file = _blame(over_layers, app_name, _first_loc(e)) or _origin(over_layers, layers.common)
                raise _one_line(e, f"{file}: host {host_name}", f"apps.{app_name}") from None
            if set(app.roles) & set(host.roles):
                resolved[host_name][app_name] = _with_local_source(app, path)
    inventory = Inventory(path=path, hosts=hosts, apps=apps, resolved=resolved)
    _check_shared_redis(inventory)
    _check_worker_users(inventory, layers)
    return inventory


def _resolve_jumps(hosts: dict[str, Host], layers: Layers) -> dict[str, Host]:
    """Each host with its `jump` resolved to the jump host (which has its own resolved first): an
    unknown name or a cycle is refused, naming the host whose `jump` closes it."""
    resolved: dict[str, Host] = {}

    def resolve(name: str, path: tuple[str, ...]) -> Host:
        if name in resolved:
            return resolved[name]
        host = hosts[name]
        if host.jump is None:
            resolved[name] = host
            return host
        where = f"{layers.hosts[name].file}: host {name}: jump"
        if host.jump not in hosts:
            raise InputError(f"{where}: no such host {host.jump!r} in hosts: (known: {', '.join(hosts)})")
        if host.jump == name or host.jump in path:
            loop = [*path[path.index(host.jump):], name, host.jump] if host.jump in path else [name, name]
            raise InputError(f"{where}: the jumps form a cycle: {' -> '.join(loop)}")
        resolved[name] = host.through(resolve(host.jump, (*path, name)))
        return resolved[name]

    for name in hosts:
        resolve(name, ())
    return {name: resolved[name] for name in hosts}


def _check_worker_users(inv: Inventory, layers: Layers) -> None:
    """Workers run as root only when a group says `user: root`: never because the host's SSH user is
    root (system mode: User= defaults to the SSH user)."""
    for host_name, apps in inv.resolved.items():
        host = inv.hosts[host_name]
        if host.user != "root":
            continue
        for app in apps.values():
            for group in inv.groups_on(host_name, app):
                if app.systemd == "system" and group.user is None:
                    raise InputError(
                        f"{layers.hosts[host_name].file}: host {host_name}: apps.{app.name}.workers.{group.name}.user: "
                        f"the workers would run as root (the host's SSH user); set workers.{group.name}.user to "
                        "the user they should run as (user: root only if they must)"
                    )


def _check_overrides(layer: Layer, who: str, apps_raw: Mapping[str, Any]) -> None:
    over = layer.data.get("apps") or {}
    if not isinstance(over, dict):
        raise InputError(f"{layer.file}: {who}: apps: must be a mapping")
    for app_name, data in over.items():
        if app_name not in apps_raw:
            raise InputError(f"{layer.file}: {who}: apps.{app_name}: no such app in apps:")
        if data is not None and not isinstance(data, dict):
            raise InputError(f"{layer.file}: {who}: apps.{app_name}: must be a mapping of overrides")


def _blame(over_layers: list[Layer], app_name: str, loc: tuple[int | str, ...]) -> Path | None:
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


def _origin(over_layers: list[Layer], common: Layer) -> Path:
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
    if app.source.is_url or repo.startswith("/"):
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
    """Apps on one Redis DB must not see each other's keys. Kinds with a key prefix (Celery, Dramatiq)
    get the app's redis_namespace, so each such app needs its own; Sidekiq and RQ have fixed key names
    (queues, retry and dead sets, worker registries), so sharing is refused unless the app says
    `redis_shared: true`, and even then two apps never share a queue name of the same kind."""
    # Every variant of every app: the shared definition and each host's (overrides may change redis).
    variants = [*inv.apps.values(), *(a for apps in inv.resolved.values() for a in apps.values())]
    seen: dict[tuple[str, int, str], list[App]] = {}
    for app in variants:
        for target in dict.fromkeys(_redis_targets(app)):
            for other in seen.get(target, []):
                if other.name != app.name:
                    _check_pair(inv, target, other, app)
            seen.setdefault(target, []).append(app)


def _unprefixed(app: App) -> dict[str, set[str]]:
    """Kinds of the app whose Redis keys take no prefix, with the queues it works for each."""
    found: dict[str, set[str]] = {}
    for g in app.workers.values():
        kind = KINDS[g.kind]
        if kind.redis_keys is RedisKeys.UNPREFIXED:
            found.setdefault(g.kind, set()).update(q.name for q in g.queues or [Queue(kind.default_queue)])
    return found


def _needs_namespace(app: App) -> bool:
    # An app whose workers are all of unprefixed kinds gains nothing from a namespace; any other app
    # (prefixed kinds, or Redis used by the app's own code) needs one.
    kinds = [KINDS[g.kind].redis_keys for g in app.workers.values()]
    return not kinds or any(k is not RedisKeys.UNPREFIXED for k in kinds)


def _check_pair(inv: Inventory, target: tuple[str, int, str], a: App, b: App) -> None:
    host, port, db = target
    where = f"{inv.path}: apps {a.name} and {b.name}: redis: both use {host}:{port}/{db}"
    for app, other in ((a, b), (b, a)):
        kinds = _unprefixed(app)
        if kinds and not app.redis_shared:
            raise InputError(
                f"{where}; {app.name} runs {', '.join(sorted(kinds))}, whose keys take no prefix: give each "
                f"app its own Redis or DB number, or set redis_shared: true on {app.name} "
                f"(its queue names must then differ from {other.name}'s)"
            )
    if _needs_namespace(a) and _needs_namespace(b) and (
        a.redis_namespace is None or b.redis_namespace is None or a.redis_namespace == b.redis_namespace
    ):
        raise InputError(f"{where} without distinct redis_namespace (give each app its own Redis or DB number)")
    mine, theirs = _unprefixed(a), _unprefixed(b)
    for kind in sorted(set(mine) & set(theirs)):
        clash = sorted(mine[kind] & theirs[kind])
        if clash:
            raise InputError(f"{where} and both run {kind} on queue {', '.join(clash)}: the two apps would take "
                             "each other's jobs (give each app its own queue names, or its own Redis DB)")
