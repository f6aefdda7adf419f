"""What deploytool runs for an app on a host sees what its workers see, not the SSH login's environment.

On prod-a the deploy user's login PATH starts with shims that fail (`python3`, `ruby`, `rq`, `celery`),
as an rbenv/pyenv install in ~/.profile and ~/.bashrc would put them there. Build steps, the RQ requeue,
`fab run` and the program check must not notice them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import DEPLOY_TO, REDIS_URL, client, fab, readlink_current, ssh, variant

pytestmark = pytest.mark.integration

SHIMMED = ("python3", "ruby", "rq", "celery")
LOGIN_PATH = 'export PATH="$HOME/shim:$PATH"  # deploytool test shim'
# A value that every layer would mangle if it were quoted wrongly on its way to the process.
WEIRD = """it's "$HOME" `id` 100% \\ $(x) ; #"""


@pytest.fixture
def login_shim(deployed: None) -> Iterator[None]:
    shims = " && ".join(f"printf '#!/bin/sh\\necho shim {p} >&2; exit 99\\n' > ~/shim/{p} && chmod +x ~/shim/{p}"
                        for p in SHIMMED)
    # At the top of .bashrc: Debian's stops early for non-interactive shells, which SSH commands are.
    add = " && ".join(f"sed -i '1i {LOGIN_PATH}' ~/{f}" for f in (".profile", ".bashrc"))
    try:
        ssh("prod-a", f"mkdir -p ~/shim && {shims} && {add}")
        seen = ssh("prod-a", "command -v python3 rq", check=False).stdout.split()
        assert seen == ["/home/deploy/shim/python3", "/home/deploy/shim/rq"], seen  # the shim is in effect
        yield
    finally:
        ssh("prod-a", "sed -i '/deploytool test shim/d' ~/.profile ~/.bashrc && rm -rf ~/shim")


def context_app(data: dict[str, Any]) -> None:
    sample = data["apps"]["sample"]
    sample["build"] = ["command -v python3 > python3-seen.txt",
                       'python3 -c "import sys; print(sys.executable)" >> python3-seen.txt']
    sample["environment"]["WEIRD"] = WEIRD
    sample["path"] = ["/home/deploy/tools-bin"]


def test_build_requeue_and_run_use_the_units_context_not_the_login_shell(
        login_shim: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, context_app)
    ssh("prod-a", "mkdir -p ~/tools-bin && printf '#!/bin/sh\\necho hello from tools-bin\\n' > ~/tools-bin/hello "
                  "&& chmod +x ~/tools-bin/hello")
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    try:
        # The deploy builds, quiets Sidekiq, stops the RQ workers and requeues what they dropped.
        d = fab("deploy", "--inventory", inv, "--host", "prod-a")
        assert d.returncode == 0, d.stderr
        seen = ssh("prod-a", f"cat {DEPLOY_TO}/current/python3-seen.txt").stdout.split()
        assert seen == ["/usr/bin/python3", "/usr/bin/python3"]

        run = fab("run", "--inventory", inv, "--host", "prod-a", "--",
                  "python3", "-c", "import sys; print(sys.executable)")
        assert (run.returncode, run.stdout) == (0, "/usr/bin/python3\n"), run.stderr
        # systemd enters `current` as the units do: its working directory is the release it points to.
        for argv, out in [(["printenv", "WEIRD"], WEIRD), (["hello"], "hello from tools-bin"),
                          (["pwd"], readlink_current("prod-a")),
                          (["sh", "-c", "for p in ruby rq celery; do printf '%s ' $(command -v $p); done"],
                           "/usr/bin/ruby /usr/bin/rq /usr/bin/celery")]:
            run = fab("run", "--inventory", inv, "--host", "prod-a", "--group", "rq", "--", *argv)
            assert (run.returncode, run.stdout.strip()) == (0, out), run.stderr
        failed = fab("run", "--inventory", inv, "--host", "prod-a", "--", "sh", "-c", "echo partial; exit 7")
        assert (failed.returncode, failed.stdout) == (7, "partial\n")
        piped = fab("run", "--inventory", inv, "--host", "prod-a", "--", "sh", "-c", "tr a-z A-Z", stdin="through\n")
        assert (piped.returncode, piped.stdout) == (0, "THROUGH\n"), piped.stderr
        tty = fab("run", "--inventory", inv, "--host", "prod-a", "--tty", "--", "sh", "-c", "[ -t 0 ] && echo terminal")
        assert (tty.returncode, tty.stdout.strip()) == (0, "terminal"), tty.stderr
        # The workers run with the same PATH.
        worker_path = ssh("prod-a", "pid=$(systemctl show -p MainPID --value sample-rq@1.service) && "
                                    "tr '\\0' '\\n' < /proc/$pid/environ | grep ^PATH=").stdout.strip()
        assert worker_path == "PATH=/home/deploy/tools-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

        # RQ requeue with the shim first in the login PATH: a job a stopping worker dropped comes back.
        assert fab("workers.stop", "--inventory", inv, "--host", "prod-a", "--group", "rq").returncode == 0
        assert fab("workers.stop", "--inventory", inv, "--host", "prod-b", "--group", "rq").returncode == 0
        try:
            client("reset", "rq")
            client("enqueue", "rq", "--count", "2", "--queue", "high")
            dropped = r.lpop("rq:queue:high")
            assert dropped is not None and r.hget(b"rq:job:" + dropped, "status") == b"queued"
        finally:
            restart = fab("workers.restart", "--inventory", inv, "--host", "prod-a", "--group", "rq")
            assert fab("workers.start", "--host", "prod-b", "--group", "rq").returncode == 0
        assert restart.returncode == 0, restart.stderr
        c = client("count", "rq", "--wait", "60")
        assert c["missing"] == 0 and c["done"] == 2, c
    finally:
        ssh("prod-a", "rm -rf ~/tools-bin")
        assert fab("workers.install", "--host", "prod-a").returncode == 0
        assert fab("workers.start", "--host", "prod-a").returncode == 0


def test_a_program_missing_in_the_workers_context_stops_the_deploy_before_it_starts(
        deployed: None, tmp_path: Path) -> None:
    inv = variant(tmp_path, lambda d: d["apps"]["sample"]["workers"]["rq"].update(command=["no-such-rq"]))
    before = readlink_current("prod-a")
    listing = ssh("prod-a", f"ls {DEPLOY_TO}/releases").stdout
    d = fab("deploy", "--inventory", inv, "--host", "prod-a")
    assert d.returncode == 1
    assert "prod-a: check:" in d.stderr and "worker group rq: program no-such-rq not found" in d.stderr, d.stderr
    # Nothing was touched: same release, same releases, no lock left.
    assert readlink_current("prod-a") == before
    assert ssh("prod-a", f"ls {DEPLOY_TO}/releases").stdout == listing
    assert ssh("prod-a", f"test -e {DEPLOY_TO}/.deploy.lock", check=False).returncode == 1


def test_user_mode_build_and_run_in_the_user_managers_context(deployed: None, tmp_path: Path) -> None:
    def user_app(d: dict[str, Any]) -> None:
        sample = d["apps"]["sample"]
        d["apps"]["mine"] = {
            "roles": ["app"], "source": sample["source"], "deploy_to": "/srv/mine", "systemd": "user",
            "environment": {"WEIRD": WEIRD}, "build": ["printenv WEIRD > weird.txt"],
            "workers": {"ticker": {"kind": "command",
                                   "command": ["/usr/bin/python3", "-c", "import time; time.sleep(1e6)"]}},
        }

    inv = variant(tmp_path, user_app)
    try:
        d = fab("deploy", "--inventory", inv, "--host", "prod-a", "--app", "mine")
        assert d.returncode == 0, d.stderr
        assert ssh("prod-a", "cat /srv/mine/current/weird.txt").stdout == WEIRD + "\n"
        mode = ssh("prod-a", "stat -c %a ~/.config/deploytool/mine/_app.env").stdout.strip()
        assert mode == "600"
        run = fab("run", "--inventory", inv, "--host", "prod-a", "--app", "mine", "--group", "ticker", "--",
                  "sh", "-c", 'printf "%s|%s" "$WEIRD" "$(pwd)"')
        release = ssh("prod-a", "readlink /srv/mine/current").stdout.strip()
        assert (run.returncode, run.stdout) == (0, f"{WEIRD}|{release}"), run.stderr
    finally:
        assert fab("workers.uninstall", "--inventory", inv, "--host", "prod-a", "--app", "mine").returncode == 0
        ssh("prod-a", "rm -rf /srv/mine ~/.config/deploytool/mine")
