"""Worker groups whose command is a process type of the app's Procfile (`procfile: NAME`).

Before anything renders a unit, each such group's `command` is filled in from the Procfile at the
revision being deployed, read from the repository on this machine (deploytool.source.show): a deploy
reads it at the commit it packs; every other task at the app's source.revision, as a deploy without
--revision would. A missing Procfile or process type is bad input (exit 2) naming the inventory, app,
group and key. Queues the command names (`rq worker high default`) become the group's `queues` when the
inventory gives none, so the redis check and jobs.status know what the group works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from deploytool import detect, source
from deploytool.errors import InputError
from deploytool.inventory import App, Inventory
from deploytool.procfile import FILE, Entry, command, find, parse
from deploytool.source import Revision


def used(inv: Inventory) -> set[str]:
    """The apps with at least one `procfile:` group (on any host)."""
    variants = [*inv.apps.values(), *(a for apps in inv.resolved.values() for a in apps.values())]
    return {a.name for a in variants if any(g.procfile for g in a.workers.values())}


def fill(app: App, entries: list[Entry], where: str, file: str) -> App:
    """`app` with each `procfile:` group's command taken from `entries`; InputError naming the key."""
    groups = {}
    for name, group in app.workers.items():
        if group.procfile is None:
            groups[name] = group
            continue
        key = f"{where}: apps.{app.name}.workers.{name}.procfile"
        try:
            cmd = command(find(entries, group.procfile))
        except ValueError as e:
            raise InputError(f"{key}: {file}: {e}") from None
        if cmd.uses_port and group.processes > 1:
            raise InputError(f"{key}: {file}: process type {group.procfile!r} listens on $PORT, which foreman gives "
                             f"each instance its own value of; with processes: {group.processes} every instance "
                             "would get the same one (run one process, or give the group its own `command:`)")
        update: dict[str, object] = {"command": tuple(cmd.exec_argv())}
        if not group.queues:
            update["queues"] = tuple(detect.queues_of(group.kind, cmd.argv))
        groups[name] = group.model_copy(update=update)
    return app.model_copy(update={"workers": groups})


def resolve(inv: Inventory, texts: Mapping[str, tuple[str | None, str]]) -> Inventory:
    """`inv` with the commands of its `procfile:` groups filled in. `texts`: per app, the Procfile's text
    (None: the revision has none) and how to name where it was read (`Procfile at main (0123abcd)`)."""
    parsed = {name: parse(text) for name, (text, _) in texts.items() if text is not None}

    def one(app: App) -> App:
        if app.name not in texts or not any(g.procfile for g in app.workers.values()):
            return app  # (an app no host runs is never rendered)
        text, shown = texts[app.name]
        if text is None:
            first = next(n for n, g in app.workers.items() if g.procfile)
            raise InputError(f"{inv.path}: apps.{app.name}.workers.{first}.procfile: no {shown}")
        return fill(app, parsed[app.name], str(inv.path), shown)

    return replace(inv, apps={n: one(a) for n, a in inv.apps.items()},
                   resolved={h: {n: one(a) for n, a in apps.items()} for h, apps in inv.resolved.items()})


def at_revisions(inv: Inventory, revisions: Mapping[str, Revision] | None = None) -> Inventory:
    """`inv` with its `procfile:` groups' commands read from each app's Procfile at `revisions[app]`
    (default: the app's source.revision, as `fab deploy` without --revision deploys it)."""
    apps = used(inv)
    if not apps:
        return inv
    texts = {}
    for name in apps:
        # A host's variant: its source.repository is resolved against the inventory's directory.
        app = next((on[name] for on in inv.resolved.values() if name in on), None)
        if app is None:
            continue
        revision = (revisions or {}).get(name) or source.resolve(app, None)
        shown = f"{FILE} at {revision.ref}" + (f" ({revision.commit[:12]})" if revision.commit else "")
        texts[name] = (source.show(app, revision, FILE), shown)
    return resolve(inv, texts)


def as_of(inv: Inventory, host: str, app: App, commit: str) -> tuple[Inventory, App]:
    """(inventory, app on `host`) with `app`'s `procfile:` groups as the release of `commit` wants them:
    what a rollback installs, and what a failed deploy puts back. Unchanged for an app without such
    groups; InputError if the commit's Procfile cannot be read here."""
    if app.name not in used(inv):
        return inv, app
    if not commit:
        raise InputError(f"app {app.name}: the release records no revision to read its {FILE} at")
    at = at_revisions(inv, {app.name: source.resolve(app, commit)})
    return at, at.apps_on(host)[app.name]
