"""Apps sharing one Redis DB: what the inventory allows, and the namespace reaching the workers."""

from __future__ import annotations

from pathlib import Path

import yaml

from deploytool.inventory import load_inventory
from deploytool.units import environment_files

SHARED = {
    "hosts": {"h1": {"address": "10.0.0.1", "roles": ["app"]}},
    "apps": {
        "shop": {"source": {"repository": "/srv/git/shop"}, "deploy_to": "/srv/shop",
                 "redis": "redis://10.0.0.9:6379/0", "redis_namespace": "shop", "redis_shared": True,
                 "workers": {"jobs": {"kind": "sidekiq", "queues": ["shop-default"]},
                             "reports": {"kind": "celery", "command": ["celery", "-A", "shop"]}}},
        "blog": {"source": {"repository": "/srv/git/blog"}, "deploy_to": "/srv/blog",
                 "redis": "redis://10.0.0.9/0", "redis_shared": True,
                 "workers": {"jobs": {"kind": "sidekiq", "queues": ["blog-default"]},
                             "mail": {"kind": "rq", "queues": ["default"]}}},
        "feed": {"source": {"repository": "/srv/git/feed"}, "deploy_to": "/srv/feed",
                 "redis": "redis://10.0.0.9:6379/0", "redis_namespace": "feed",
                 "workers": {"fetch": {"kind": "dramatiq", "command": ["dramatiq", "feed.tasks"]}}},
    },
}


def test_shared_db_with_own_queues_and_namespaces_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "shared.yml"
    path.write_text(yaml.safe_dump(SHARED))
    inv = load_inventory(path)
    assert sorted(inv.apps) == ["blog", "feed", "shop"]


def test_namespace_reaches_the_workers_environment(tmp_path: Path) -> None:
    path = tmp_path / "shared.yml"
    path.write_text(yaml.safe_dump(SHARED))
    inv = load_inventory(path)
    # In the group's environment file, which the units load.
    feed = {f.name: f.content for f in environment_files(inv, "h1", inv.apps_on("h1")["feed"])}
    assert "DEPLOYTOOL_REDIS_NAMESPACE='feed'" in feed["fetch.env"].splitlines()
    # An app without a namespace gets no such variable (blog's Sidekiq and RQ have no prefix).
    blog = {f.name: f.content for f in environment_files(inv, "h1", inv.apps_on("h1")["blog"])}
    assert "DEPLOYTOOL_REDIS_NAMESPACE" not in blog["jobs.env"]
