"""Sources of the archive strategy: a work tree, a bare repository, a URL (mirrored in a local cache);
a branch, tag or commit. Real git repositories in a temporary directory, no network."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from deploytool.errors import InputError
from deploytool.inventory import App
from deploytool.source import Revision, mirror_path, pack, resolve, shown, uncommitted

REPO = Path(__file__).resolve().parents[2]
FAB = REPO / ".venv" / "bin" / "fab"
# In the sandbox range, but no sandbox host ever has it: a connection attempt would fail (exit 1).
NOWHERE = "10.213.0.250"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                               "HOME": str(repo), "PATH": "/usr/bin:/bin"}).stdout.strip()


def commit(repo: Path, name: str, text: str) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"add {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A work tree: main with app.py and web/index.html, a tag v1, a branch next with one more commit."""
    repo = tmp_path / "work"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "web/index.html", "<p>hi</p>\n")
    commit(repo, "app.py", "print('v1')\n")
    git(repo, "tag", "-a", "v1", "-m", "v1")
    git(repo, "checkout", "-q", "-b", "next")
    commit(repo, "app.py", "print('next')\n")
    git(repo, "checkout", "-q", "main")
    return repo


@pytest.fixture
def bare(work: Path, tmp_path: Path) -> Path:
    path = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def app(repository: str | Path, revision: str = "main") -> App:
    return App.model_validate({"name": "shop", "roles": ["app"], "deploy_to": "/srv/shop",
                               "source": {"repository": str(repository), "revision": revision}})


def packed(a: App, revision: Revision, tmp_path: Path) -> dict[str, str]:
    with tarfile.open(pack(a, revision, tmp_path)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["work tree", "bare", "file URL"])
def test_branch_tag_and_commit_resolve_and_pack(kind: str, work: Path, bare: Path, tmp_path: Path) -> None:
    repository = {"work tree": str(work), "bare": str(bare), "file URL": f"file://{bare}"}[kind]
    v1 = git(work, "rev-parse", "v1^{commit}")
    tip = git(work, "rev-parse", "next")
    for ref, expected, content in [("main", v1, "print('v1')\n"), ("v1", v1, "print('v1')\n"),
                                   ("next", tip, "print('next')\n"), (tip[:10], tip, "print('next')\n")]:
        rev = resolve(app(repository, ref), None)
        assert rev.commit == expected, ref
        assert packed(app(repository), rev, tmp_path) == {"app.py": content, "web/index.html": "<p>hi</p>\n"}


def test_revision_option_overrides_the_inventory(bare: Path) -> None:
    assert resolve(app(bare, "main"), "next").commit == git(bare, "rev-parse", "next")


def test_a_subdirectory_of_a_work_tree_is_packed_alone(work: Path, tmp_path: Path) -> None:
    a = app(work / "web")
    assert packed(a, resolve(a, None), tmp_path) == {"index.html": "<p>hi</p>\n"}


def test_uncommitted_changes_left_out_of_a_head_deploy_are_named(work: Path, bare: Path) -> None:
    assert uncommitted(resolve(app(work, "HEAD"), None)) == []
    (work / "app.py").write_text("print('edited')\n")
    (work / "web" / "new.html").write_text("new\n")
    assert sorted(uncommitted(resolve(app(work, "HEAD"), None))) == ["app.py", "web/new.html"]
    assert uncommitted(resolve(app(work, "main"), None)) != []  # main is checked out: the same commit
    # Only the app's subdirectory counts; another commit, a bare repository: nothing to say.
    assert uncommitted(resolve(app(work / "web", "HEAD"), None)) == ["web/new.html"]
    assert uncommitted(resolve(app(work, "next"), None)) == []
    assert uncommitted(resolve(app(bare, "main"), None)) == []


def test_a_url_is_mirrored_in_the_cache_and_fetched_every_time(work: Path, bare: Path, cache: Path) -> None:
    url = f"file://{bare}"
    first = resolve(app(url), None)
    mirror = mirror_path(url)
    assert mirror.parent == cache / "deploytool" / "repos" and mirror.name.startswith("origin-")
    assert first.repository == str(mirror) and (mirror / "HEAD").is_file()
    # A new commit pushed to the origin is seen by the next deploy.
    new = commit(work, "app.py", "print('v2')\n")
    git(work, "push", "-q", str(bare), "main")
    assert resolve(app(url), None).commit == new
    assert [p.name for p in mirror.parent.iterdir()] == [mirror.name]  # no partial clone left behind


def test_a_broken_mirror_is_cloned_again(bare: Path) -> None:
    url = f"file://{bare}"
    mirror_path(url).mkdir(parents=True)
    (mirror_path(url) / "junk").write_text("x")
    assert resolve(app(url), None).commit == git(bare, "rev-parse", "main")
    assert not (mirror_path(url) / "junk").exists()


@pytest.mark.parametrize("revision", ["nope", "v9", "0" * 40, "--output=/tmp/x"])
def test_unknown_revision_is_bad_input(revision: str, bare: Path) -> None:
    with pytest.raises(InputError) as e:
        resolve(app(f"file://{bare}", revision), None)
    assert str(e.value) == (f"app shop: source.revision {revision!r}: no such branch, tag or commit in file://{bare}")


def test_unreachable_or_missing_repository_is_bad_input(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(InputError, match=r"^app shop: source\.repository file://.*/gone\.git: git clone --mirror: "
                                         r"fatal: '.*/gone\.git' does not appear to be a git repository$"):
        resolve(app(f"file://{tmp_path}/gone.git"), None)
    assert not list((cache / "deploytool" / "repos").iterdir())  # the failed clone left nothing
    with pytest.raises(InputError, match=r"^app shop: source\.repository .*/gone: no such directory$"):
        resolve(app(tmp_path / "gone"), None)
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match=r"^app shop: source\.repository .*/plain: git rev-parse "
                                         r"--is-bare-repository: fatal: not a git repository"):
        resolve(app(tmp_path / "plain"), None)


def test_a_password_in_a_url_is_never_shown() -> None:
    assert shown("https://ci:s3cret@git.example.invalid/acme/shop.git") == \
        "https://ci:***@git.example.invalid/acme/shop.git"
    assert shown("https://git.example.invalid:8443/shop.git") == "https://git.example.invalid:8443/shop.git"
    assert shown("git@git.example.invalid:acme/shop.git") == "git@git.example.invalid:acme/shop.git"
    with pytest.raises(InputError) as e:
        resolve(app("https://ci:s3cret@127.0.0.1:9/shop.git"), None)
    assert "s3cret" not in str(e.value) and "https://ci:***@127.0.0.1:9/shop.git" in str(e.value)


# --- `fab deploy` stops before any host ------------------------------------------------------------


def deploy(tmp_path: Path, repository: str, *args: str) -> subprocess.CompletedProcess[str]:
    inventory = {
        "hosts": {"far": {"address": NOWHERE, "user": "deploy", "roles": ["app"], "connect_timeout": 5}},
        "apps": {"shop": {"roles": ["app"], "deploy_to": "/srv/shop",
                          "source": {"repository": repository, "revision": "main"}}},
    }
    path = tmp_path / "far.yml"
    path.write_text(yaml.safe_dump(inventory))
    return subprocess.run([str(FAB), "-r", str(REPO), "deploy", "--inventory", str(path), *args],
                          capture_output=True, text=True, check=False, timeout=120)


def test_deploy_of_an_unknown_revision_exits_2_before_any_host(bare: Path, tmp_path: Path) -> None:
    r = deploy(tmp_path, str(bare), "--revision", "nope")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"error: app shop: --revision 'nope': no such branch, tag or commit in {bare}"]
    assert r.stdout == ""


def test_deploy_from_an_unreachable_repository_exits_2_before_any_host(tmp_path: Path) -> None:
    r = deploy(tmp_path, f"file://{tmp_path}/gone.git")
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: app shop: source.repository file://{tmp_path}/gone.git: git clone --mirror: ")
    assert r.stdout == ""
