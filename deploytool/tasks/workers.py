"""`fab workers.*`: render, install and manage the worker units of each app on each host."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from deploytool.errors import InputError
from deploytool.tasks.options import HELP, exit_codes, load, not_yet, select_targets
from deploytool.units import render_app


@task(help={**HELP, "out": "directory to write the units to (HOST/UNIT); default: print them"})
@exit_codes
def render(
    c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
    out: str | None = None,
) -> None:
    """Render the worker units for hosts without connecting to them."""
    inv = load(c, inventory)
    targets = select_targets(inv, host, app)
    many_hosts = len({t.host for t in targets}) > 1
    for t in targets:
        units = render_app(inv, t.host, t.app, template_dirs=project_templates(inv.path))
        if out is None:
            for unit in units:
                print(f"# --- {t.host}: {unit.name}\n{unit.content}")
            continue
        directory = Path(out) / t.host if many_hosts else Path(out)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for unit in units:
                (directory / unit.name).write_text(unit.content)
        except OSError as e:
            raise InputError(f"--out {out}: cannot write: {e.strerror}") from None
        print(f"{t.host}: {t.app.name}: wrote {len(units)} units to {directory}")


def project_templates(inventory_path: Path) -> list[Path]:
    """A project's own templates/systemd/ (beside its inventories/) overrides the built-in ones."""
    base = inventory_path.parent if inventory_path.is_file() else inventory_path
    candidate = base.parent / "templates" / "systemd"
    return [candidate] if candidate.is_dir() else []


def _later(name: str, doc: str) -> object:
    def body(
        c: Context, inventory: str | None = None, host: str | None = None, app: str | None = None,
    ) -> None:
        select_targets(load(c, inventory), host, app)
        not_yet(f"workers.{name}", "issue #5")

    body.__name__ = name
    body.__doc__ = doc
    return task(help=HELP)(exit_codes(body))


install = _later("install", "Upload the units, enable instances 1..N and the target (start at boot).")
uninstall = _later("uninstall", "Stop, disable and remove all of an app's worker units.")
enable = _later("enable", "Make the workers start at boot.")
disable = _later("disable", "Stop the workers from starting at boot (running ones keep running).")
start = _later("start", "Start the workers.")
stop = _later("stop", "Stop the workers, letting running jobs finish within the grace.")
quiet = _later("quiet", "Make the workers stop fetching new jobs (kinds that support it).")
restart = _later("restart", "Quiet, stop and start the workers, host by host.")
status = _later("status", "Show each worker unit's state; exit 1 unless all are active.")
logs = _later("logs", "Show the workers' journal.")

workers = Collection(
    "workers", render, install, uninstall, enable, disable, start, stop, quiet, restart, status, logs
)
