"""`fab deploy`, `fab rollback`, `fab releases`: Capistrano-style releases on the hosts."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from deploytool.tasks.options import HELP, exit_codes, load, not_yet, select_targets

DEPLOY_HELP = {
    **HELP,
    "revision": "git revision to deploy (default: the app's source.revision)",
    "parallel": "hosts deployed at once (default: all of a batch)",
    "batch": "rolling batches: N hosts or P% of them at a time",
    "max_fail": "hosts that may fail before the remaining batches are cancelled",
    "force_unlock": "clear a deploy lock left behind (the holder is reported)",
}


@task(help=DEPLOY_HELP)
@exit_codes
def deploy(
    c: Context,
    inventory: str | None = None,
    host: str | None = None,
    app: str | None = None,
    role: str | None = None,
    revision: str | None = None,
    parallel: int = 0,
    batch: str | None = None,
    max_fail: int = 0,
    force_unlock: bool = False,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Ship a new release, switch `current` and restart the workers."""
    select_targets(load(c, inventory), host, app, role)
    not_yet("deploy", "issue #4")


@task(help={**HELP, "release": "release to roll back to (timestamp; default: the previous one)"})
@exit_codes
def rollback(
    c: Context,
    inventory: str | None = None,
    host: str | None = None,
    app: str | None = None,
    release: str | None = None,
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Switch `current` back to an earlier release and restart the workers."""
    select_targets(load(c, inventory), host, app)
    not_yet("rollback", "issue #4")


@task(help=HELP)
@exit_codes
def releases(
    c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
    json: bool = False,
) -> None:
    """List the releases on each host, newest first, current marked."""
    select_targets(load(c, inventory), host, app)
    not_yet("releases", "issue #4")
