"""A readiness probe's `check` keeps asking in one run (deploytool/jobs/probes/poll.py): until the answer
is yes or SPEC's `within` seconds passed, an error counting as "not yet". Run here as a host runs them:
the programs by python3, RQ's against a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from redis_server import PYTHON, required_in_ci, socket, usable

from deploytool.commands import ready
from deploytool.jobs.systems import PROBES, SYSTEMS

__all__ = ["socket"]  # the fixture

# A probe whose answers are given on its command line, one per question; the last one repeats.
SCRIPTED = """
import json, sys
answers, within = json.loads(sys.argv[1]), float(sys.argv[2])
asked = []
def ask():
    asked.append(1)
    answer = answers[min(len(asked), len(answers)) - 1]
    if answer == "error":
        raise ConnectionError("the broker is restarting")
    return answer == "yes", f"answer {len(asked)}: {answer}"
status = polled(ask, within)
print(f"asked {len(asked)}")
sys.exit(status)
"""


def scripted(answers: list[str], within: float) -> tuple[int, list[str]]:
    source = (PROBES / "poll.py").read_text() + SCRIPTED
    r = subprocess.run([PYTHON, "-", json.dumps(answers), str(within)], input=source, capture_output=True,
                       text=True, timeout=60, check=False)
    assert not r.stderr, r.stderr
    return r.returncode, r.stdout.splitlines()


def test_asks_until_the_answer_is_yes() -> None:
    assert scripted(["no", "no", "yes"], within=30) == (0, ["answer 3: yes", "asked 3"])


def test_an_error_is_not_yet_and_said_when_it_is_the_last_answer() -> None:
    assert scripted(["error", "yes"], within=30) == (0, ["answer 2: yes", "asked 2"])
    status, out = scripted(["error"], within=0)
    assert (status, out) == (1, ["ConnectionError: the broker is restarting", "asked 1"])


def test_within_zero_asks_once() -> None:
    assert scripted(["no", "yes"], within=0) == (1, ["answer 1: no", "asked 1"])


def test_says_no_with_the_last_answer_once_within_passed() -> None:
    status, out = scripted(["no"], within=0.5)
    assert status == 1 and out[0].endswith(": no")
    assert int(out[1].split()[1]) >= 2  # asked again in the same run, not once


def test_every_readiness_probe_is_sent_with_poll_and_asked_within() -> None:
    for name, system in SYSTEMS.items():
        if system.ready_probe:
            source = system.ready_source()
            assert "def polled(" in source and "polled(" in (PROBES / system.ready_probe).read_text(), name
    assert ready.ASK_WITHIN > 0


@required_in_ci(usable(), "redis-server and python3 with rq and redis (Debian's)")
def test_the_rq_probe_asks_redis_again_and_again_within_one_run(socket: str, tmp_path: Path) -> None:
    spec = {"units": ["shop-rq@1.service"], "queues": ["default"], "processes": 1, "within": 1}
    r = subprocess.run([PYTHON, "-", "check", "", json.dumps(spec)], input=SYSTEMS["rq"].ready_source(),
                       capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
                       env={"PATH": os.environ["PATH"], "REDIS_URL": f"unix://{socket}"})
    assert r.returncode == 1, r.stderr
    assert r.stdout.strip() == "shop-rq@1.service: no worker registered in Redis"
    # Every question reads the workers' set once: more than one read means one run asked again.
    stats = subprocess.run(["redis-cli", "-s", socket, "info", "commandstats"], capture_output=True, text=True,
                           check=True).stdout
    [line] = [ln for ln in stats.splitlines() if ln.startswith("cmdstat_smembers:")]
    assert int(line.split("calls=")[1].split(",")[0]) >= 2, line
