"""Inventory loading, per-host merging and validation (the broken corpus), without any host.

The broken corpus lives in tests/unit/broken/: one YAML file per case, or one directory per
directory-form case. The case's first line (of `common.yml` for a directory) is

    # error: <text the one-line message must contain>

and a directory case adds a second line `# file: <path inside the case>` naming the file the message
must start with (a single-file case's message starts with that file). Add a case by adding a file.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from deploytool.errors import InputError
from deploytool.inventory import Inventory, load_inventory, resolve_path
from deploytool.kinds import Queue

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BROKEN = HERE / "broken"
VALID = HERE / "inventories"


# --- the broken corpus --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    path: Path  # what is passed to load_inventory
    file: Path  # the file the message must start with
    expected: str


def _header(text: str, key: str, line: int) -> str:
    lines = text.splitlines()
    prefix = f"# {key}: "
    assert len(lines) > line and lines[line].startswith(prefix), f"line {line + 1} must be '{prefix}...'"
    return lines[line].removeprefix(prefix)


def _cases() -> list[Case]:
    cases = []
    for entry in sorted(BROKEN.iterdir()):
        if entry.is_dir():
            text = (entry / "common.yml").read_text()
            file = entry / _header(text, "file", 1)
            cases.append(Case(entry.name, entry, file, _header(text, "error", 0)))
        elif entry.suffix == ".yml":
            cases.append(Case(entry.stem, entry, entry, _header(entry.read_text(), "error", 0)))
    return cases


CASES = _cases()


def test_corpus_is_all_cases() -> None:
    # A stray file (wrong suffix) would silently test nothing.
    names = {c.path.name for c in CASES}
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(names)
    assert len(CASES) >= 60


def _refusal(path: Path | str) -> str:
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert info.value.exit_code == 2
    return str(info.value)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_inventory_is_refused_with_one_line(case: Case) -> None:
    message = _refusal(case.path)
    assert message.splitlines() == [message]
    assert "\n" not in message and "\r" not in message and "\0" not in message
    assert message.startswith(str(case.file)), message
    assert case.expected in message


def test_missing_inventory_names_it() -> None:
    message = _refusal(HERE / "no-such-inventory.yml")
    assert message == f"{HERE / 'no-such-inventory.yml'}: no such inventory file"
    with pytest.raises(InputError, match=r"^inventory 'no-such-stage': no .*no-such-stage\.yml nor directory$"):
        resolve_path("no-such-stage")


# --- valid inventories ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Inventory:
    return load_inventory("sandbox", REPO)


@pytest.fixture(scope="module")
def basic() -> Inventory:
    return load_inventory(VALID / "basic.yml")


@pytest.fixture(scope="module")
def layered() -> Inventory:
    return load_inventory(str(VALID / "layered"))


def test_shipped_sandbox_loads(sandbox: Inventory) -> None:
    assert sandbox.path == REPO / "inventories" / "sandbox.yml"
    assert list(sandbox.hosts) == ["prod-a", "prod-b", "redis-a", "rabbit-a"]
    assert set(sandbox.apps_on("prod-a")) == {"sample"}
    assert dict(sandbox.apps_on("redis-a")) == {} == dict(sandbox.apps_on("rabbit-a"))
    assert sandbox.hosts_for_app("sample") == ["prod-a", "prod-b"]
    sidekiq = sandbox.apps["sample"].workers["sidekiq"]
    assert (sidekiq.kind, sidekiq.threads, sidekiq.queues) == (
        "sidekiq", 5, (Queue("critical", 2), Queue("default")),
    )


def test_per_host_override_of_a_worker_group(sandbox: Inventory) -> None:
    # apps.sample.workers.sidekiq: 2 processes x 5 threads for every host; prod-a 3 processes,
    # prod-b 3 threads.
    assert sandbox.apps["sample"].workers["sidekiq"].processes == 2
    a = sandbox.apps_on("prod-a")["sample"].workers["sidekiq"]
    b = sandbox.apps_on("prod-b")["sample"].workers["sidekiq"]
    assert (a.processes, a.threads) == (3, 5)
    assert (b.processes, b.threads) == (2, 3)
    # Each override touches its own key only.
    for group in (a, b):
        assert (group.timeout, group.command) == (25, ("sidekiq", "-r", "./sidekiq_app.rb"))
    for host in ("prod-a", "prod-b"):
        assert sandbox.apps_on(host)["sample"].workers["rq"].processes == 2


def test_objects_are_frozen(sandbox: Inventory) -> None:
    group = sandbox.apps["sample"].workers["sidekiq"]
    with pytest.raises(ValidationError):
        group.processes = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sandbox.path = Path("/x")  # type: ignore[misc]


def test_resolve_path_takes_a_name_or_a_path() -> None:
    assert resolve_path("sandbox", REPO) == REPO / "inventories" / "sandbox.yml"
    assert resolve_path(str(VALID / "basic.yml")) == VALID / "basic.yml"
    assert resolve_path(str(VALID / "layered")) == VALID / "layered"
    by_name = load_inventory("sandbox", REPO)
    by_path = load_inventory(REPO / "inventories" / "sandbox.yml")
    assert by_name.hosts == by_path.hosts
    assert by_name.resolved == by_path.resolved


def test_relative_path_is_taken_from_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(VALID)
    assert set(load_inventory("./basic.yml").hosts) == {"app-1", "worker-1", "db-1"}
    assert set(load_inventory("layered").hosts) >= {"web-1", "work-1"}


def test_environment_scalars_become_strings(basic: Inventory) -> None:
    shop = basic.apps["shop"]
    assert shop.environment == {"PORT": "8080", "DEBUG": "false", "VERBOSE": "true", "RATIO": "0.5",
                                "NAME": "shop"}
    assert shop.workers["jobs"].environment == {"MALLOC_ARENA_MAX": "2"}


def test_ssh_files_resolve_against_the_inventory_directory(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # not the inventory's directory
    inv = load_inventory(VALID / "basic.yml")
    assert inv.hosts["app-1"].known_hosts == str(VALID / "keys" / "known_hosts")
    assert inv.hosts["app-1"].identity == str(VALID / "keys" / "id_ed25519")
    assert inv.hosts["worker-1"].known_hosts == "/etc/ssh/ssh_known_hosts"
    assert inv.hosts["worker-1"].identity == str(tmp_path / ".ssh" / "id_ed25519")
    assert inv.hosts["db-1"].known_hosts is None


def test_local_source_repository_becomes_absolute(basic: Inventory, sandbox: Inventory) -> None:
    assert basic.apps_on("app-1")["shop"].source.repository == str(VALID.parent / "repos" / "shop")
    assert sandbox.apps_on("prod-a")["sample"].source.repository == str(REPO / "examples" / "sample-app")
    # Remote repositories are left alone.
    assert basic.apps_on("app-1")["blog"].source.repository == "git@example.invalid:blog.git"
    assert basic.apps_on("worker-1")["stats"].source.repository == "https://example.invalid/stats.git"


def test_apps_run_only_on_hosts_with_a_matching_role(basic: Inventory) -> None:
    assert set(basic.apps_on("app-1")) == {"shop", "blog"}
    assert set(basic.apps_on("worker-1")) == {"shop", "blog", "stats"}
    assert dict(basic.apps_on("db-1")) == {}
    assert basic.hosts_for_app("stats") == ["worker-1"]
    assert basic.hosts_for_app("shop") == ["app-1", "worker-1"]


def test_group_roles_narrow_where_a_group_runs(basic: Inventory) -> None:
    shop = basic.apps["shop"]
    assert [g.name for g in basic.groups_on("app-1", shop)] == ["jobs"]
    assert [g.name for g in basic.groups_on("worker-1", shop)] == ["jobs", "heavy"]


def test_apps_on_one_redis_with_distinct_namespaces_or_dbs_are_allowed(basic: Inventory) -> None:
    # shop and blog share 10.0.0.9:6379/0 with their own namespaces; stats uses DB 1.
    assert {a.redis_namespace for a in basic.apps.values()} == {"shop", "blog", None}


def test_directory_form_merges_defaults_then_roles_then_host(layered: Inventory) -> None:
    def sidekiq(host: str) -> tuple[int, int | None, tuple[Queue, ...]]:
        g = layered.apps_on(host)["shop"].workers["sidekiq"]
        return g.processes, g.threads, g.queues

    weighted = (Queue("critical", 2), Queue("default"))
    assert sidekiq("web-1") == (1, 5, (Queue("default"),))  # defaults only
    assert sidekiq("work-1") == (2, 5, weighted)  # role worker
    assert sidekiq("work-2") == (6, 10, weighted)  # roles worker, big; then its host file
    # The shared definition is not changed by any override.
    assert layered.apps["shop"].workers["sidekiq"].processes == 1


def test_directory_form_replaces_lists_and_merges_mappings(layered: Inventory) -> None:
    assert layered.apps_on("web-1")["shop"].linked_dirs == ("log", "tmp")
    assert layered.apps_on("work-1")["shop"].linked_dirs == ("log",)  # replaced, not ("log", "tmp", "log")
    assert layered.apps_on("work-1")["shop"].environment == {"SHOP_ENV": "production"}
    assert layered.apps_on("work-2")["shop"].environment == {"SHOP_ENV": "production", "EXTRA": "1"}


def test_directory_form_host_files(layered: Inventory) -> None:
    assert layered.hosts["work-2"].port == 2222  # hosts/work-2.yml over common.yml's hosts.work-2
    assert layered.hosts["work-2"].address == "10.0.0.3"
    assert layered.hosts["admin-1"].roles == ("admin",)  # defined only by its own file
    assert set(layered.apps_on("admin-1")) == {"admin"}
    assert dict(layered.apps_on("cache-1")) == {}
    assert [g.name for g in layered.groups_on("web-1", layered.apps_on("web-1")["shop"])] == ["clock"]
    # common.yml is the inventory file: its relative source resolves against the directory.
    assert layered.apps_on("web-1")["shop"].source.repository == str(VALID / "repo")


def test_a_group_is_named_by_its_key(tmp_path: Path) -> None:
    file = tmp_path / "inv.yml"
    file.write_text(
        "hosts: {h1: {address: 10.0.0.1, roles: [app]}}\n"
        "apps:\n  web:\n    source: {repository: /srv/git/web}\n    deploy_to: /srv/web\n"
        "    workers:\n      jobs: {kind: rq, name: other}\n"
    )
    assert [g.name for g in load_inventory(file).apps["web"].workers.values()] == ["jobs"]


# --- the command line -------------------------------------------------------------------------

FAB = REPO / ".venv" / "bin" / "fab"
FAB_CASES = ["invalid_yaml", "host_override_bad_value", "redis_shared_no_namespace", "dir_role_bad_value"]


def _fab(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "FABRIC_"))}
    return subprocess.run([str(FAB), "-r", str(REPO), *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in FAB_CASES], ids=FAB_CASES)
def test_fab_inventory_check_refuses_broken_inventory(case: Case) -> None:
    result = _fab("inventory.check", "--inventory", str(case.path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(_refusal(case.path))
    assert case.expected in lines[0]


@pytest.mark.parametrize("inventory", ["sandbox", str(VALID / "basic.yml"), str(VALID / "layered")])
def test_fab_inventory_check_accepts_valid_inventory(inventory: str) -> None:
    result = _fab("inventory.check", "--inventory", inventory)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_jump_hosts_resolve_to_a_route_of_inventory_hosts(tmp_path: Path) -> None:
    path = tmp_path / "jumps.yml"
    path.write_text(
        "hosts:\n"
        "  edge: {address: 192.0.2.1, port: 2222, user: gate, identity: keys/gate}\n"
        "  inner: {address: 10.0.0.2, jump: edge}\n"
        "  app: {address: 10.0.1.3, jump: inner, roles: [app]}\n"
        "  direct: {address: 10.0.0.4}\n"
        "apps:\n"
        "  web: {source: {repository: /srv/git/web}, deploy_to: /srv/web}\n"
    )
    inv = load_inventory(path)
    route = inv.hosts["app"].route
    assert [h.name for h in route] == ["edge", "inner"]
    # Each hop is the inventory's own host: its address, port, user and key (paths resolved) are used.
    assert (route[0].address, route[0].port, route[0].user) == ("192.0.2.1", 2222, "gate")
    assert route[0].identity == str(tmp_path / "keys" / "gate")
    assert [h.name for h in route[1].route] == ["edge"]
    assert inv.hosts["inner"].route == (inv.hosts["edge"],)
    assert inv.hosts["direct"].route == () and inv.hosts["edge"].route == ()
