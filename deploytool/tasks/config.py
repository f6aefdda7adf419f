"""`fab config.upload`: put a linked file (an env file, a credentials file) into shared/ on every host of
an app, without raw ssh. Prints per host only whether it changed, never the content."""

from __future__ import annotations

import json as jsonlib
import os
import sys
import tempfile
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from deploytool import shared_files
from deploytool.commands import config as cmd
from deploytool.commands.config import SharedFile
from deploytool.errors import InputError
from deploytool.hostwork import on_host
from deploytool.inventory import Inventory
from deploytool.remote import Session
from deploytool.report import HostReport, Reporter, mark_skipped
from deploytool.rolling import run
from deploytool.shared_files import Content
from deploytool.tasks.options import Target, command, load, select_targets


def read_content(source: str, workdir: Path) -> Content:
    """`-` reads standard input (a CI secret piped in) into a private file in `workdir`; anything else is
    a path on this machine."""
    try:
        if source == "-":
            path = workdir / "stdin"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(sys.stdin.buffer.read())
            return Content.of(path)
        return Content.of(Path(source))
    except OSError as e:
        raise InputError(f"--from {source}: cannot read: {e.strerror}") from None


def one_app(targets: list[Target], inventory: Path) -> list[Target]:
    apps = sorted({t.app.name for t in targets})
    if len(apps) > 1:
        raise InputError(f"{inventory}: the selected hosts run several apps ({', '.join(apps)}): "
                         "name one with --app")
    return targets


def upload_all(inv: Inventory, files: dict[str, SharedFile], content: Content, dry_run: bool) -> list[HostReport]:
    reports = {h: HostReport(h, f.app.name) for h, f in files.items()}
    quiet = Reporter(quiet=True)

    def work(h: str) -> bool:
        def one(session: Session, f: SharedFile, report: HostReport) -> None:
            if dry_run:
                current = shared_files.is_current(session, f, content)
                report.details["result"] = shared_files.UNCHANGED if current else "would change"
            else:
                report.details["result"] = shared_files.upload(session, f, content)

        return on_host(inv.hosts[h], [files[h]], [reports[h]], quiet, one)

    run(list(files), work, lambda h, reason: mark_skipped([reports[h]], reason))
    return list(reports.values())


@command(file="the linked file, as in the app's linked_files (e.g. config/app.env)",
         from_="the file on this machine to upload, or - for standard input")
def upload(
    c: Context, file: str | None = None, from_: str | None = None, inventory: str | None = None,
    host: str | None = None, app: str | None = None, dry_run: bool = False, json: bool = False,
) -> None:
    """Put a linked file into shared/ on every host of the app: mode 0600, owned by the workers' user."""
    inv = load(c, inventory)
    if not file or not from_:
        raise InputError("config.upload needs --file LINKED_FILE and --from PATH")
    targets = one_app(select_targets(inv, host, app), inv.path)
    # Every host's file is checked before any host is contacted: bad input touches nothing.
    files = {t.host: shared_files.shared_file(inv, t.host, t.app, file) for t in targets}
    with tempfile.TemporaryDirectory(prefix="deploytool-upload-") as workdir:
        done = upload_all(inv, files, read_content(from_, Path(workdir)), dry_run)
    if json:
        print(jsonlib.dumps({"file": file, "dry_run": dry_run, "ok": all(r.status == "ok" for r in done),
                             "hosts": [{"host": r.host, "app": r.app, "status": r.status, "error": r.error,
                                        "result": r.details.get("result")} for r in done]}, indent=2))
    else:
        if dry_run:
            print("dry run: hosts are only read; a changed file would be uploaded to a private temporary "
                  f"file beside it, made mode {cmd.MODE} and owned by the workers' user, then renamed over it")
        for r in done:
            shown = r.details.get("result") or f"{r.status}: {r.error}"
            print(f"{r.host}: {r.app}: {files[r.host].path}: {shown}")
    if any(r.status != "ok" for r in done):
        raise Exit(code=1)


config = Collection("config", upload)
