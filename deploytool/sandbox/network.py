"""The sandbox network: one bridge on the controller, one network namespace per host.

A host sees only `lo` and `eth0` (its address on 10.213.0.0/24, no default route), so the hosts can
reach each other and the controller (10.213.0.1) and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploytool.sandbox.run import Argv, run, run_all
from deploytool.sandbox.spec import GATEWAY, SUBNET, SandboxHost

BRIDGE = "dtbr0"
NETNS_PREFIX = "dt-"
VETH_PREFIX = "dtv"  # + last octet: at most 6 characters, well under the 15-character limit


def netns_name(host_name: str) -> str:
    return NETNS_PREFIX + host_name


def netns_path(host_name: str) -> Path:
    return Path("/run/netns") / netns_name(host_name)


def veth_name(host: SandboxHost) -> str:
    return f"{VETH_PREFIX}{host.octet}"


def bridge_commands() -> list[Argv]:
    return [
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", f"{GATEWAY}/{SUBNET.prefixlen}", "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ]


def host_commands(host: SandboxHost) -> list[Argv]:
    ns, veth = netns_name(host.name), veth_name(host)
    return [
        ["ip", "netns", "add", ns],
        # Create the pair with its inner end already in the namespace, named as on a real host.
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
        ["ip", "link", "set", veth, "master", BRIDGE, "up"],
        ["ip", "-n", ns, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def ensure_bridge() -> None:
    if not link_exists(BRIDGE):
        run_all(bridge_commands())


def add_host(host: SandboxHost) -> None:
    remove_host(host.name, veth_name(host))  # leftovers of a crashed run would make `add` fail
    run_all(host_commands(host))


def remove_host(host_name: str, veth: str | None = None) -> None:
    """Delete the namespace (its eth0 and so the veth pair go with it) and any stray veth."""
    if netns_path(host_name).exists():
        run(["ip", "netns", "del", netns_name(host_name)])
    if veth:
        _delete_link(veth)


def remove_bridge() -> None:
    for link in sandbox_links():
        _delete_link(link)


def _delete_link(name: str) -> None:
    # A veth vanishes on its own, asynchronously, once its peer's namespace is deleted: a failed
    # delete is fine as long as the link is gone afterwards.
    result = run(["ip", "link", "del", name], check=False)
    if result.returncode != 0 and link_exists(name):
        run(["ip", "link", "del", name])


def sandbox_namespaces() -> list[str]:
    """Host names whose namespace exists (including ones no state dir remembers)."""
    out = run(["ip", "-j", "netns", "list"]).stdout.strip()
    names = [entry["name"] for entry in json.loads(out or "[]")]
    return [n.removeprefix(NETNS_PREFIX) for n in names if n.startswith(NETNS_PREFIX)]


def sandbox_links() -> list[str]:
    """Stray veths first, then the bridge: the bridge is always deleted last."""
    out = run(["ip", "-j", "link", "show"]).stdout.strip()
    names = [entry["ifname"] for entry in json.loads(out or "[]")]
    veths = [n for n in names if n.startswith(VETH_PREFIX) and n[len(VETH_PREFIX) :].isdigit()]
    return veths + [n for n in names if n == BRIDGE]
