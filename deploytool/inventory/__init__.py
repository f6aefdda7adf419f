"""Inventories: YAML → merged per host (defaults → role → host) → validated, frozen, typed objects.

An inventory is `inventories/NAME.yml` or a directory `inventories/NAME/` holding `common.yml` (the
shared part), `roles/ROLE.yml` and `hosts/HOST.yml` (each merged over it, hieradata-style). Everything
is validated once, here; the rest of deploytool trusts these objects.

Modules: model (the typed objects), layers (YAML files read and merged), load (validation with
one-line errors).
"""

from deploytool.inventory.load import load_inventory, resolve_path
from deploytool.inventory.model import NAMESPACE_ENV, App, Host, Inventory, Source, WorkerGroup

__all__ = ["NAMESPACE_ENV", "App", "Host", "Inventory", "Source", "WorkerGroup", "load_inventory", "resolve_path"]
