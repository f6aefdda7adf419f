"""Reading an inventory's YAML files into layers (common, roles, hosts) and merging them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploytool.errors import InputError


@dataclass(frozen=True)
class Layer:
    file: Path
    data: dict[str, Any]


@dataclass(frozen=True)
class Layers:
    common: Layer
    roles: Mapping[str, Layer]  # role → {apps: ...}
    hosts: Mapping[str, Layer]  # host → host file (directory form) or the common file


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


def read_layers(path: Path) -> Layers:
    if path.is_dir():
        common = Layer(path / "common.yml", _read_yaml(path / "common.yml"))
        roles = {f.stem: Layer(f, _read_yaml(f)) for f in sorted((path / "roles").glob("*.yml"))}
        host_files = {f.stem: Layer(f, _read_yaml(f)) for f in sorted((path / "hosts").glob("*.yml"))}
    else:
        if not path.exists():
            raise InputError(f"{path}: no such inventory file")
        common = Layer(path, _read_yaml(path))
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
        roles = {**roles, str(role): roles.get(str(role), Layer(common.file, data))}
    hosts_raw = common.data.get("hosts") or {}
    if not isinstance(hosts_raw, dict):
        raise InputError(f"{common.file}: hosts: must be a mapping of host name to settings")
    hosts: dict[str, Layer] = {}
    for name, data in hosts_raw.items():
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{common.file}: host {name}: must be a mapping (address:, user:, ...)")
        hosts[str(name)] = Layer(common.file, data)
    for name, layer in host_files.items():
        base = hosts.get(name)
        hosts[name] = Layer(layer.file, merge(base.data, layer.data) if base else layer.data)
    if not hosts:
        raise InputError(f"{common.file}: hosts: no hosts defined")
    return Layers(common, roles, hosts)


def _check_top(layer: Layer, allowed: set[str]) -> None:
    for key in layer.data:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise InputError(f"{layer.file}: {key}: unknown top-level key (expected {expected})")


def merge(base: Any, over: Any) -> Any:
    """Deep-merge mappings; anything else in `over` replaces `base` (lists are not concatenated)."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for k, v in over.items():
            merged[k] = merge(base.get(k), v) if k in base else v
        return merged
    return over
