"""Readiness and the release a running worker works in: the shell text of deploytool.commands.ready and
.running, run by a real bash against a stand-in systemctl (real processes for /proc/PID/cwd)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploytool import units
from deploytool.commands import ready, running
from deploytool.inventory import App, Inventory, WorkerGroup, load_inventory

UNITS = Path(__file__).resolve().parent / "inventories" / "units.yml"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(UNITS)


@pytest.fixture
def shop(inv: Inventory) -> App:
    return inv.apps_on("w1")["shop"]


def stand_in(tmp_path: Path, systemctl: str) -> dict[str, str]:
    """PATH with a `sudo` that runs its command and a `systemctl` with the given body."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("sudo", '[ "$1" = -n ] && shift; exec "$@"'), ("systemctl", systemctl)):
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A process working in an old release, as a worker started before `current` was switched."""
    old = tmp_path / "releases" / "1"
    new = tmp_path / "releases" / "2"
    old.mkdir(parents=True)
    new.mkdir()
    (tmp_path / "current").symlink_to(new)
    p = subprocess.Popen(["sleep", "60"], cwd=old)
    yield p, old
    p.kill()
    p.wait()


def release(env: dict[str, str], app: App, group: WorkerGroup) -> str:
    text = running.release_of(app, group) + '\nprintf "%s" "$release"'
    return subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True, check=True).stdout


def test_release_of_is_the_running_workers_directory_not_current(
        tmp_path: Path, shop: App, worker: tuple[subprocess.Popen[bytes], Path]) -> None:
    p, old = worker
    app = shop.model_copy(update={"deploy_to": str(tmp_path)})
    # The first instance is not running (MainPID 0), the second is the worker.
    env = stand_in(tmp_path, f'case "$*" in *@1.service) echo 0 ;; *) echo {p.pid} ;; esac')
    assert release(env, app, app.workers["celery"]) == str(old)


def test_release_of_is_current_resolved_when_no_worker_runs(tmp_path: Path, shop: App,
                                                           worker: tuple[subprocess.Popen[bytes], Path]) -> None:
    app = shop.model_copy(update={"deploy_to": str(tmp_path)})
    env = stand_in(tmp_path, "echo 0")
    assert release(env, app, app.workers["celery"]) == str(tmp_path / "releases" / "2")


def active_run(env: dict[str, str], app: App, group: WorkerGroup) -> str:
    text = running.while_active(app, group, "shop-celery@1.service", ['echo "ran in $release"'])
    return subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True, check=True).stdout


def test_while_active_runs_in_the_release_of_the_running_worker(
        tmp_path: Path, shop: App, worker: tuple[subprocess.Popen[bytes], Path]) -> None:
    p, old = worker
    app = shop.model_copy(update={"deploy_to": str(tmp_path)})
    group = app.workers["celery"]
    env = stand_in(tmp_path, f'echo "$*" >> {tmp_path}/calls; printf "MainPID={p.pid}\\nActiveState=active\\n"')
    assert active_run(env, app, group) == f"ran in {old}\n"
    assert len((tmp_path / "calls").read_text().splitlines()) == 1  # state and PID in one call
    # A worker whose directory cannot be read: the release `current` points to.
    env = stand_in(tmp_path, 'printf "ActiveState=active\\nMainPID=999999999\\n"')
    assert active_run(env, app, group) == f"ran in {tmp_path / 'releases' / '2'}\n"


@pytest.mark.parametrize("state", ["inactive", "deactivating", "failed", "activating"])
def test_while_active_runs_nothing_unless_the_unit_is_active(tmp_path: Path, shop: App, state: str) -> None:
    env = stand_in(tmp_path, f'printf "ActiveState={state}\\nMainPID=0\\n"')
    assert active_run(env, shop, shop.workers["celery"]) == ""


def states_systemctl(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A systemctl whose `show` prints the unit states written in a file (Id ActiveState MainPID NRestarts)."""
    states = tmp_path / "states"
    body = ('[ "$1" = show ] || exit 1; while read -r id a p n; do '
            'printf "Id=%s\\nActiveState=%s\\nMainPID=%s\\nNRestarts=%s\\n\\n" "$id" "$a" "$p" "$n"; '
            f"done < {states}")
    return stand_in(tmp_path, body), states


def wait(env: dict[str, str], app: App, group: WorkerGroup, change: str | None = None,
         after: float = 0.0, states: Path | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.Popen(["bash", "-c", ready.wait(app, [group], "w1")], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if change is not None and states is not None:
        time.sleep(after)
        states.write_text(change)
    out, err = p.communicate(timeout=30)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_a_command_worker_is_ready_once_it_stayed_up_for_ready_after(tmp_path: Path, shop: App) -> None:
    group = shop.workers["command"].model_copy(update={"ready_after": 2})
    env, states = states_systemctl(tmp_path)
    states.write_text("shop-command@1.service active 41 0\n")
    started = time.monotonic()
    r = wait(env, shop, group)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started >= 2
    assert r.stdout.startswith("ready: shop/command after ")


def test_every_group_is_read_once_after_the_start_then_as_it_waits(tmp_path: Path, shop: App) -> None:
    states, calls = tmp_path / "states", tmp_path / "calls"
    # `show` prints the states of the units asked for, as systemctl does; each call is recorded.
    env = stand_in(tmp_path, f'echo "$*" >> {calls}; [ "$1" = show ] || exit 1; while read -r id a p n; do '
                   'case " $* " in *" $id "*) printf "Id=%s\\nActiveState=%s\\nMainPID=%s\\nNRestarts=%s\\n\\n" '
                   f'"$id" "$a" "$p" "$n";; esac; done < {states}')
    groups = [shop.workers["command"].model_copy(update={"ready_after": 0}),
              shop.workers["sidekiq"].model_copy(update={"ready_after": 0})]
    states.write_text("shop-command@1.service active 41 0\n" + "".join(
        f"{u} active {50 + i} 0\n" for i, u in enumerate(units.instances(shop, groups[1]))))
    r = subprocess.run(["bash", "-c", ready.wait(shop, groups, "w1")], env=env, capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    # One read of every unit right after the start, then one per group: it was active and unchanged.
    assert len(calls.read_text().splitlines()) == 1 + len(groups)


@pytest.mark.parametrize(("change", "why"), [
    ("shop-command@1.service active 42 1\n", "shop-command@1.service has a new main process (41 -> 42)"),
    ("shop-command@1.service activating 0 1\n", "shop-command@1.service is activating (exited)"),
    ("shop-command@1.service active 41 1\n", "shop-command@1.service was restarted (1 restarts)"),
])
def test_a_worker_that_exits_or_restarts_while_waited_for_fails_the_group(
        tmp_path: Path, shop: App, change: str, why: str) -> None:
    group = shop.workers["command"].model_copy(update={"ready_after": 5})
    env, states = states_systemctl(tmp_path)
    states.write_text("shop-command@1.service active 41 0\n")
    started = time.monotonic()
    r = wait(env, shop, group, change=change, after=1.0, states=states)
    assert r.returncode == 1
    assert r.stderr.strip() == f"shop/command: not ready: {why}"
    assert time.monotonic() - started < 5  # at once, not at the end of the wait


@pytest.mark.parametrize("state", ["activating 0 1", "failed 0 0", "inactive 0 0"])
def test_a_worker_not_active_right_after_the_start_fails_at_once(tmp_path: Path, shop: App, state: str) -> None:
    group = shop.workers["command"].model_copy(update={"ready_after": 5})
    env, states = states_systemctl(tmp_path)
    states.write_text(f"shop-command@1.service {state}\n")
    started = time.monotonic()
    r = wait(env, shop, group)
    assert r.returncode == 1
    assert r.stderr.startswith(f"shop/command: not ready: shop-command@1.service is {state.split()[0]} ")
    assert time.monotonic() - started < 2


def test_ready_after_zero_turns_the_wait_off(tmp_path: Path, shop: App) -> None:
    group = shop.workers["command"].model_copy(update={"ready_after": 0})
    env, states = states_systemctl(tmp_path)
    states.write_text("shop-command@1.service active 41 0\n")
    started = time.monotonic()
    assert wait(env, shop, group).returncode == 0
    assert time.monotonic() - started < 1.5


def test_groups_default_ready_after_comes_from_the_kind(shop: App) -> None:
    assert shop.workers["command"].ready_wait == 5
    assert shop.workers["sidekiq"].ready_wait == 0
