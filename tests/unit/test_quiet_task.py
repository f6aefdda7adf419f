"""`fab workers.quiet`: its policy for kinds without a quiet mechanism (RQ, Dramatiq, Sneakers, command),
and Celery's retried control commands, run in a real shell (stand-ins for sudo, systemctl, systemd-run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from deploytool.commands.quiet import until_replied
from deploytool.inventory import load_inventory
from deploytool.kinds import KINDS
from deploytool.operations.workers import Workers
from deploytool.tasks.workers import quiet_shortfall


def test_kinds_that_can_be_quieted() -> None:
    assert sorted(k.name for k in KINDS.values() if k.can_quiet) == ["celery", "sidekiq"]


def test_every_kind_quieted_is_fine() -> None:
    assert quiet_shortfall(["celery", "sidekiq"], [], strict=True) is None


def test_a_mixed_app_reports_the_rest_without_failing() -> None:
    assert quiet_shortfall(["sidekiq"], ["rq"], strict=False) is None


def test_strict_fails_a_mixed_app_naming_the_kinds() -> None:
    why = quiet_shortfall(["sidekiq"], ["dramatiq", "rq"], strict=True)
    assert why == ("quiet: not supported by dramatiq, rq (no per-worker quiet mechanism); "
                   "the other kinds were quieted")


def test_nothing_quietable_is_no_failure_unless_strict() -> None:
    # An RQ-only app: RQ has no quiet, nothing failed (a note says so).
    assert quiet_shortfall([], ["rq"], strict=False) is None
    why = quiet_shortfall([], ["rq"], strict=True)
    assert why is not None and why.endswith("nothing was quieted")


def test_until_replied_tries_again_and_fails_if_it_never_succeeds(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    succeeds_third = f"[ $(echo x >> {counter}; wc -l < {counter}) -ge 3 ]"
    ok = subprocess.run(["sh", "-c", until_replied(succeeds_third, 5)], check=False)
    assert ok.returncode == 0 and counter.read_text().count("x") == 3
    never = subprocess.run(["sh", "-c", until_replied("false", 2) + "; echo status $?"], capture_output=True,
                           text=True, check=False)
    assert never.stdout.strip() == "status 1"


# systemd-run as the Celery quiet calls it: its last words are `cancel_consumer QUEUE -d NODE`. Nodes 1 and
# 4 each answer only once the other has been asked too (so they must be asked at once); NEVER names a
# "queue node" that never replies (Celery's exit 69).
SYSTEMD_RUN = """
queue="${@: -3:1}"; node="${@: -1}"
echo "$queue $node" >> calls
[ "$queue $node" = "$NEVER" ] && exit 69
case "$node" in shop-celery-1@w1) peer=shop-celery-4@w1 ;; shop-celery-4@w1) peer=shop-celery-1@w1 ;; *) exit 0 ;; esac
touch "asked-$node"
for i in $(seq 100); do [ -e "asked-$peer" ] && exit 0; /bin/sleep 0.05; done
exit 75
"""


def celery_quiet(tmp_path: Path, never: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    inv = load_inventory(Path(__file__).resolve().parent / "inventories" / "units.yml")
    [command] = Workers(inv, "w1", inv.apps_on("w1")["shop"], "celery").quiet_commands()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sudo", '[ "$1" = -n ] && shift; exec "$@"'),
                       ("systemctl", 'printf "ActiveState=active\\nMainPID=0\\n"'),
                       ("systemd-run", SYSTEMD_RUN),
                       ("sleep", "true")):  # the retries' pauses: no need to wait here
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NEVER": never}
    # Bounded: asked one after another, nodes 1 and 4 would each wait 5 s per try, ten tries.
    done = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, sorted((tmp_path / "calls").read_text().splitlines())


def test_celery_nodes_are_quieted_side_by_side(tmp_path: Path) -> None:
    done, calls = celery_quiet(tmp_path)
    assert done.returncode == 0, done.stderr
    assert calls == sorted(f"{q} shop-celery-{n}@w1" for n in range(1, 5) for q in ("mail", "reports"))


def test_a_node_that_never_replies_fails_the_quiet_and_the_others_are_still_quieted(tmp_path: Path) -> None:
    # Its first queue fails: the node fails (not only when its last queue does), its second queue is
    # not asked; every other node is asked for both of its queues.
    done, calls = celery_quiet(tmp_path, never="mail shop-celery-3@w1")
    assert done.returncode != 0
    assert calls.count("mail shop-celery-3@w1") == 10 and "reports shop-celery-3@w1" not in calls
    assert [c for c in calls if "celery-3" not in c] == sorted(
        f"{q} shop-celery-{n}@w1" for n in (1, 2, 4) for q in ("mail", "reports"))
