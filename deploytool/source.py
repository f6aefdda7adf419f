"""The app's code on the machine running fab: find the repository, resolve a revision, pack it once
for every host (the archive strategy; with the git strategy the hosts fetch and resolve themselves).

`source.repository` is a work tree (or a subdirectory of one: a monorepo app is archived alone), a
bare repository, or a URL. A URL is kept as a mirror in `$XDG_CACHE_HOME/deploytool/repos/` on this
machine (default `~/.cache`), cloned on first use and fetched on every deploy. Everything here runs
before any host is contacted, so a repository that cannot be read or a revision that does not exist
is bad input (InputError, exit 2) and no host is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from deploytool.errors import InputError
from deploytool.inventory import App


@dataclass(frozen=True)
class Revision:
    ref: str  # what was asked for (HEAD, main, a tag)
    commit: str  # what it resolved to; "" when the hosts resolve it (git strategy)
    # Where the commit was found on this machine: the work tree's top, the bare repository or the
    # URL's mirror; and the app's subdirectory inside it ("" for the whole tree).
    repository: str = ""
    prefix: str = ""


def shown(repository: str) -> str:
    """A repository as it may be printed: a password or token in a URL is masked."""
    parts = urlsplit(repository)
    if "://" not in repository or parts.password is None:
        return repository
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # Unattended: git must fail, not ask for a username or password on the terminal.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        raise InputError("git is not installed on this machine") from None


def _why(r: subprocess.CompletedProcess[str], repository: str, fallback: str) -> str:
    # git's first `fatal:` says what went wrong; the lines after it are advice.
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith(("fatal:", "error:"))), lines[-1] if lines else fallback)
    return first.replace(repository, shown(repository))


def _git(app: App, repo: str, *args: str) -> str:
    r = _run("-C", repo, *args)
    if r.returncode != 0:
        raise InputError(f"app {app.name}: source.repository {shown(app.source.repository)}: "
                         f"git {' '.join(args)}: {_why(r, repo, 'not a git repository')}")
    return r.stdout.strip()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deploytool" / "repos"


def mirror_path(url: str) -> Path:
    """The URL's mirror: a readable name and a hash of the whole URL (two URLs never share one)."""
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "-", urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "repo")
    tail = tail.removesuffix(".git")[:40] or "repo"
    return cache_dir() / f"{tail}-{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"


def sync_mirror(app: App) -> Path:
    """Clone the URL as a mirror on first use, fetch it every time after; the path of the mirror."""
    url = app.source.repository
    mirror = mirror_path(url)
    if (mirror / "HEAD").is_file():
        r = _run("-C", str(mirror), "fetch", "--prune", "--quiet", "origin")
        action = "fetch"
    else:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(mirror, ignore_errors=True)  # not a repository (emptied by hand?): clone it again
        # Cloned beside its final place and renamed: an interrupted clone never looks like a mirror.
        partial = Path(tempfile.mkdtemp(prefix=f".{mirror.name}-", dir=mirror.parent))
        r = _run("clone", "--mirror", "--quiet", url, str(partial))
        if r.returncode == 0:
            with contextlib.suppress(OSError):  # another fab cloned it meanwhile: theirs is as good
                partial.rename(mirror)
        shutil.rmtree(partial, ignore_errors=True)
        action = "clone --mirror"
    if r.returncode != 0:
        why = _why(r, url, "repository unreachable")
        raise InputError(f"app {app.name}: source.repository {shown(url)}: git {action}: {why}")
    return mirror


def _local(app: App) -> tuple[str, str]:
    """(where git runs, the app's subdirectory there) for the archive strategy."""
    if app.source.is_url:
        return str(sync_mirror(app)), ""
    path = app.source.repository
    if not Path(path).is_dir():
        raise InputError(f"app {app.name}: source.repository {path}: no such directory")
    if _git(app, path, "rev-parse", "--is-bare-repository") == "true":
        return path, ""
    return _git(app, path, "rev-parse", "--show-toplevel"), _git(app, path, "rev-parse", "--show-prefix")


def resolve(app: App, ref: str | None) -> Revision:
    """The commit `ref` (default: the app's source.revision) names: a branch, tag or commit."""
    wanted = ref or app.source.revision
    if app.source.strategy == "git":
        return Revision(wanted, "")
    repo, prefix = _local(app)
    r = _run("-C", repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{wanted}^{{commit}}")
    if r.returncode != 0 or not r.stdout.strip():
        key = "--revision" if ref else "source.revision"
        raise InputError(f"app {app.name}: {key} {wanted!r}: no such branch, tag or commit in "
                         f"{shown(app.source.repository)}")
    return Revision(wanted, r.stdout.strip(), repo, prefix)


def uncommitted(revision: Revision) -> list[str]:
    """Paths of the work tree (of the app's subdirectory) with changes not in the commit a deploy ships,
    when that commit is the work tree's HEAD (`revision: HEAD`, the checked-out branch): edited, staged
    or untracked files the deploy silently leaves out. Empty for a bare repository, a mirror, or another
    commit (a tag deployed from a work tree on a branch is not about the edits there)."""
    repo = revision.repository
    if not revision.commit or not repo or _run("-C", repo, "rev-parse", "--is-bare-repository").stdout.strip() \
            != "false":
        return []
    if _run("-C", repo, "rev-parse", "--verify", "--quiet", "HEAD").stdout.strip() != revision.commit:
        return []
    r = _run("-C", repo, "status", "--porcelain", "--", revision.prefix or ".")
    return [line[3:] for line in r.stdout.splitlines() if len(line) > 3]


def pack(app: App, revision: Revision, workdir: Path) -> Path:
    """`git archive` of the resolved commit (of the app's subdirectory only, in a monorepo)."""
    tree = f"{revision.commit}:{revision.prefix}" if revision.prefix else revision.commit
    fd, name = tempfile.mkstemp(prefix=f"{app.name}-", suffix=".tar.gz", dir=workdir)
    with open(fd, "wb") as out:
        # From the top: git refuses `archive` inside a subdirectory that the work tree does not track.
        r = subprocess.run(["git", "-C", revision.repository, "archive", "--format=tar.gz", tree],
                           stdout=out, stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        why = (r.stderr.decode().strip().splitlines() or ["failed"])[0]
        raise InputError(f"app {app.name}: source.repository {shown(app.source.repository)}: git archive {tree}: {why}")
    return Path(name)


def show(app: App, revision: Revision, path: str) -> str | None:
    """The text of `path` (relative to the app's directory, in a monorepo its subdirectory) at the
    revision, read on this machine; None if the revision has no such file. With the git strategy the
    hosts resolve the revision themselves: here it is resolved in the same repository (a URL's mirror)."""
    if revision.commit:
        repo, prefix, commit = revision.repository, revision.prefix, revision.commit
    else:
        repo, prefix = _local(app)
        commit = _git(app, repo, "rev-parse", "--verify", "--end-of-options", f"{revision.ref}^{{commit}}")
    spec = f"{commit}:{prefix}{path}"
    if _run("-C", repo, "cat-file", "-e", spec).returncode != 0:
        return None
    return _git(app, repo, "cat-file", "blob", spec) + "\n"
