"""`fab inventory.check`: validate an inventory and summarise what it would deploy where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.context import Context

from deploytool.report import json_text
from deploytool.tasks.options import command, load

if TYPE_CHECKING:
    from deploytool.inventory import Inventory


def summary(inv: Inventory) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for name, host in inv.hosts.items():
        apps: dict[str, Any] = {}
        for app_name, app in inv.apps_on(name).items():
            apps[app_name] = {
                "deploy_to": app.deploy_to,
                "workers": {
                    g.name: {
                        "kind": g.kind,
                        "processes": g.processes,
                        "threads": g.threads,
                        "queues": [q.name if q.weight is None else f"{q.name}:{q.weight}" for q in g.queues],
                        "grace": g.grace,
                    }
                    for g in inv.groups_on(name, app)
                },
            }
        hosts[name] = {"address": host.address, "port": host.port, "user": host.user, "jump": host.jump,
                       "roles": list(host.roles), "apps": apps}
    return {"inventory": str(inv.path), "hosts": hosts}


def _lines(data: dict[str, Any]) -> list[str]:
    out = [f"inventory {data['inventory']}: ok"]
    for name, h in data["hosts"].items():
        via = f" via {h['jump']}" if h["jump"] else ""
        out.append(f"  {name}  {h['user']}@{h['address']}:{h['port']}{via}  roles: {', '.join(h['roles']) or '-'}")
        for app_name, app in h["apps"].items():
            out.append(f"    {app_name}  {app['deploy_to']}")
            for g_name, g in app["workers"].items():
                threads = f" x {g['threads']} threads" if g["threads"] else ""
                queues = ",".join(g["queues"]) or "-"
                out.append(f"      {g_name}: {g['kind']} {g['processes']} processes{threads}, "
                           f"queues {queues}, grace {g['grace']}s")
    return out


@command()
def check(c: Context, inventory: str | None = None, json: bool = False) -> None:
    """Validate an inventory and print what runs where."""
    from deploytool import task_reports

    data = summary(load(c, inventory))
    if json:
        print(json_text(task_reports.inventory_check(data["inventory"], data["hosts"])))
    else:
        print("\n".join(_lines(data)))


inventory = Collection("inventory", check)
