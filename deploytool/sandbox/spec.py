"""Which hosts the sandbox boots: name, address and roles, read from an inventory file.

Kept to three fields on purpose: the sandbox needs nothing else, and `SandboxHost.from_host` takes any
object with .name/.address/.roles, so switching to `deploytool.inventory.load_inventory(path).hosts`
is a one-line change in `load_hosts`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from deploytool.errors import InputError

SUBNET = ipaddress.IPv4Network("10.213.0.0/24")
GATEWAY = ipaddress.IPv4Address("10.213.0.1")
# Host names become file names, netns names and /etc/hostname: keep them plain.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class HostLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def roles(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class SandboxHost:
    name: str
    address: str
    roles: tuple[str, ...] = ()

    @classmethod
    def from_host(cls, host: HostLike) -> SandboxHost:
        return sandbox_host(host.name, host.address, tuple(host.roles))

    @property
    def octet(self) -> int:
        """Last octet of the address: unique on the /24, so it names the host's veth."""
        return int(self.address.rsplit(".", 1)[1])


def sandbox_host(name: str, address: str, roles: Iterable[str] = (), where: str = "") -> SandboxHost:
    """A validated host; sandbox hosts live on 10.213.0.0/24 only, so traffic never leaves it."""
    prefix = f"{where}: " if where else ""
    if not _NAME.match(name):
        raise InputError(f"{prefix}host {name!r}: name must be lowercase letters, digits and '-'")
    try:
        addr = ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise InputError(f"{prefix}host {name}: address {address!r} is not an IPv4 address") from exc
    if addr not in SUBNET or addr in (GATEWAY, SUBNET.network_address, SUBNET.broadcast_address):
        raise InputError(f"{prefix}host {name}: address {address} is not a host address in {SUBNET}")
    return SandboxHost(name, str(addr), tuple(roles))


def check_unique(hosts: Iterable[SandboxHost]) -> list[SandboxHost]:
    result = list(hosts)
    for attr in ("name", "address"):
        seen: set[str] = set()
        for host in result:
            value = getattr(host, attr)
            if value in seen:
                raise InputError(f"host {host.name}: duplicate {attr} {value}")
            seen.add(value)
    return result


def load_hosts(path: Path) -> list[SandboxHost]:
    """The hosts of an inventory file (only `hosts:` with address and roles is read here)."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read inventory: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict) or not hosts:
        raise InputError(f"{path}: key 'hosts' must map host names to settings")
    result = []
    for name, settings in hosts.items():
        if not isinstance(settings, dict) or "address" not in settings:
            raise InputError(f"{path}: host {name}: key 'address' is required")
        roles = settings.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InputError(f"{path}: host {name}: key 'roles' must be a list of names")
        result.append(sandbox_host(str(name), str(settings["address"]), roles, where=str(path)))
    return check_unique(result)
