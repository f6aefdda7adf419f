"""The app's code on the machine running fab: resolve a revision and pack it once for every host."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploytool.errors import InputError
from deploytool.inventory import App


@dataclass(frozen=True)
class Revision:
    ref: str  # what was asked for (HEAD, main, a tag)
    commit: str  # what it resolved to; "" when the hosts resolve it (git strategy)


def _git(repo: str, *args: str) -> str:
    try:
        r = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InputError("git is not installed on this machine") from None
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no such revision or not a git repository"])[-1]
        raise InputError(f"source {repo}: git {' '.join(args)}: {why}")
    return r.stdout.strip()


def resolve(app: App, ref: str | None) -> Revision:
    wanted = ref or app.source.revision
    if app.source.strategy == "git":
        return Revision(wanted, "")
    commit = _git(app.source.repository, "rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}")
    return Revision(wanted, commit)


def pack(app: App, revision: Revision, workdir: Path) -> Path:
    """`git archive` of the commit; a repository subdirectory (a monorepo app) is archived alone."""
    prefix = _git(app.source.repository, "rev-parse", "--show-prefix")
    top = _git(app.source.repository, "rev-parse", "--show-toplevel")
    tree = f"{revision.commit}:{prefix}" if prefix else revision.commit
    fd, name = tempfile.mkstemp(prefix=f"{app.name}-", suffix=".tar.gz", dir=workdir)
    with open(fd, "wb") as out:
        # From the top: git refuses `archive` inside a subdirectory that the work tree does not track.
        r = subprocess.run(["git", "-C", top, "archive", "--format=tar.gz", tree],
                           stdout=out, stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        raise InputError(f"source {app.source.repository}: git archive {tree}: {r.stderr.decode().strip()}")
    return Path(name)
