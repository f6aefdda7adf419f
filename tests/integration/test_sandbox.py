"""The sandbox fleet is made of real hosts: systemd as PID 1, sshd, Redis, sudo, cgroups, reboots."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from deploytool import sandbox
from deploytool.sandbox import Fleet, cgroup, process
from deploytool.sandbox.run import run

pytestmark = pytest.mark.integration

HOSTS = ("prod-a", "prod-b", "redis-a", "rabbit-a")
SAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
SYSTEM_PYTHON = "/usr/bin/python3"  # has Debian's python3-redis and python3-rq, as the hosts do


def install_unit(fleet: Fleet, host: str, name: str, body: str) -> None:
    """Install a unit file the way deploytool does: sudo tee, then daemon-reload."""
    path = f"/etc/systemd/system/{name}"
    fleet.ssh(host, f"printf %s {shlex.quote(body)} | sudo tee {path} >/dev/null && sudo systemctl daemon-reload")


def sleeps(fleet: Fleet, host: str) -> list[str]:
    """`PID ARGS` of every sleep process on the host."""
    return fleet.ssh(host, "pgrep -ax sleep || true").stdout.splitlines()


@pytest.mark.parametrize("name", HOSTS)
def test_host_runs_systemd_and_sshd(fleet: Fleet, name: str) -> None:
    assert fleet.ssh(name, "hostname").stdout.strip() == name
    assert fleet.ssh(name, "ps -o comm= -p 1").stdout.strip() == "systemd"
    assert fleet.ssh(name, "systemctl is-system-running").stdout.strip() in ("running", "degraded")
    assert fleet.ssh(name, "systemctl is-active ssh").stdout.strip() == "active"


def test_each_host_has_its_own_host_key_and_checking_is_strict(fleet: Fleet, tmp_path: Path) -> None:
    keys = {}
    for line in sandbox.KNOWN_HOSTS.read_text().splitlines():
        names, key_type, key = line.split()
        if key_type == "ssh-ed25519":
            keys[names.split(",")[0]] = key
    assert sorted(keys) == sorted(fleet.address(n) for n in HOSTS)
    assert len(set(keys.values())) == len(HOSTS), "hosts share a host key"

    # prod-b's key filed under prod-a's address: a strict client must refuse prod-a.
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{fleet.address('prod-a')} ssh-ed25519 {keys[fleet.address('prod-b')]}\n")
    argv = [a.replace(str(sandbox.KNOWN_HOSTS), str(wrong)) for a in sandbox.ssh_argv(fleet.address("prod-a"), "true")]
    refused = run(argv, check=False)
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr


def test_redis_a_serves_redis_on_its_address(fleet: Fleet) -> None:
    redis = fleet.address("redis-a")
    assert fleet.ssh("prod-a", f"redis-cli -h {redis} ping").stdout.strip() == "PONG"
    assert fleet.ssh("prod-b", f"redis-cli -h {redis} ping").stdout.strip() == "PONG"
    # The controller's enabled services are masked on the other hosts, redis-server included.
    assert fleet.ssh("prod-a", "systemctl is-enabled redis-server", check=False).stdout.strip() == "masked"


def test_rabbit_a_serves_amqp_on_its_address_to_the_sample_user(fleet: Fleet) -> None:
    from deploytool.sandbox.services import amqp_url

    # From an app host, as the sample app connects; the URL (with its password) travels on stdin.
    probe = ("import pika, sys; c = pika.BlockingConnection(pika.URLParameters(sys.stdin.readline().strip())); "
             "print(c.channel().queue_declare('', exclusive=True).method.queue.startswith('amq.gen-')); c.close()")
    r = subprocess.run(sandbox.ssh_argv(fleet.address("prod-a"), [SYSTEM_PYTHON, "-c", probe]),
                       input=amqp_url("rabbit-a") + "\n", capture_output=True, text=True, timeout=60, check=False)
    assert r.stdout.strip() == "True", r.stderr
    assert fleet.ssh("rabbit-a", "systemctl is-active rabbitmq-server").stdout.strip() == "active"
    # guest stays loopback-only, and the broker runs on rabbit-a alone.
    assert "guest" not in fleet.ssh("rabbit-a", "sudo -n rabbitmqctl -q list_users").stdout.split()
    assert fleet.ssh("prod-a", "systemctl is-enabled rabbitmq-server", check=False).stdout.strip() == "masked"


def test_deploy_user_is_plain_and_can_sudo_systemctl(fleet: Fleet) -> None:
    assert fleet.ssh("prod-a", "id -un").stdout.strip() == "deploy"
    assert fleet.ssh("prod-a", "sudo -n systemctl is-active ssh").stdout.strip() == "active"
    assert fleet.ssh("prod-a", "stat -c %U /srv").stdout.strip() == "deploy"
    # A stock home from /etc/skel: root's dotfiles (pyenv) would slow every command down.
    assert fleet.ssh("prod-a", "grep -c pyenv ~/.bashrc ~/.profile", check=False).stdout.split() == [
        "/home/deploy/.bashrc:0",
        "/home/deploy/.profile:0",
    ]


def test_stopping_a_unit_on_one_host_leaves_the_same_unit_on_another_alone(fleet: Fleet) -> None:
    unit = "dt-isolation.service"
    # Main process `sleep 1001` and a forked child `sleep 1000`: KillMode=control-group must kill both.
    body = "[Service]\nExecStart=/bin/sh -c 'sleep 1000 & exec sleep 1001'\n"
    for host in ("prod-a", "prod-b"):
        install_unit(fleet, host, unit, body)
        fleet.ssh(host, f"sudo systemctl start {unit}")
    try:
        on_b = sleeps(fleet, "prod-b")
        assert sorted(line.split(maxsplit=1)[1] for line in on_b) == ["sleep 1000", "sleep 1001"]
        assert len(sleeps(fleet, "prod-a")) == 2
        # Each host's unit has a cgroup of its own on the controller, under that host's subtree.
        for host in ("prod-a", "prod-b"):
            assert (cgroup.host_dirs(host)[0] / "payload/system.slice" / unit).is_dir()

        fleet.ssh("prod-a", f"sudo systemctl stop {unit}")

        assert sleeps(fleet, "prod-a") == []
        assert sleeps(fleet, "prod-b") == on_b
    finally:
        for host in ("prod-a", "prod-b"):
            fleet.ssh(host, f"sudo systemctl stop {unit}; sudo rm -f /etc/systemd/system/{unit}", check=False)


def test_reboot_boots_the_host_again_with_its_disk_and_enabled_units(fleet: Fleet) -> None:
    unit = "dt-at-boot.service"
    body = "[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n"
    install_unit(fleet, "prod-a", unit, body)
    fleet.ssh("prod-a", f"sudo systemctl enable {unit} && touch /srv/kept && sudo tee /run/gone </dev/null")
    before = process.nspawn_pids("prod-a")
    try:
        fleet.reboot("prod-a")

        assert process.nspawn_pids("prod-a") not in ([], before)
        assert fleet.ssh("prod-a", f"systemctl is-active {unit}").stdout.strip() == "active"
        assert fleet.ssh("prod-a", "test -e /srv/kept && ! test -e /run/gone", check=False).returncode == 0
    finally:
        fleet.ssh(
            "prod-a",
            f"sudo systemctl disable --now {unit}; sudo rm -f /etc/systemd/system/{unit} /srv/kept",
            check=False,
        )


def test_up_again_leaves_running_hosts_alone(fleet: Fleet) -> None:
    pids = {h: process.nspawn_pids(h) for h in HOSTS}
    known_hosts = sandbox.KNOWN_HOSTS.read_text()

    fleet.up()

    assert {h: process.nspawn_pids(h) for h in HOSTS} == pids
    assert sandbox.KNOWN_HOSTS.read_text() == known_hosts
    assert fleet.ssh("prod-b", "hostname").stdout.strip() == "prod-b"


def test_down_of_one_host_removes_all_of_it_and_nothing_else(fleet: Fleet) -> None:
    extra = sandbox.sandbox_host("tmp-down", "10.213.0.250")
    sandbox.up([extra])
    try:
        assert sandbox.host_traces("tmp-down")
        assert "10.213.0.250" in sandbox.KNOWN_HOSTS.read_text()
    finally:
        sandbox.down(names=["tmp-down"])
    assert sandbox.host_traces("tmp-down") == []
    assert "10.213.0.250" not in sandbox.KNOWN_HOSTS.read_text()
    assert fleet.ssh("prod-a", "hostname").stdout.strip() == "prod-a"


def test_sample_app_rq_worker_records_jobs_in_redis(fleet: Fleet) -> None:
    """The sample app's RQ job runs on a sandbox host against redis-a (a burst worker, no deploy)."""
    redis_url = f"redis://{fleet.address('redis-a')}:6379/0"
    client = [SYSTEM_PYTHON, str(SAMPLE_APP / "client.py"), "--redis", redis_url]
    app_dir = "/srv/sample-smoke"
    archive = subprocess.run(["tar", "-C", str(SAMPLE_APP), "-c", "jobs.py"], capture_output=True, check=True)
    run([*client, "reset", "rq"])
    try:
        subprocess.run(
            sandbox.ssh_argv(fleet.address("prod-b"), f"mkdir -p {app_dir} && tar -x -C {app_dir}"),
            input=archive.stdout, check=True,
        )  # fmt: skip
        run([*client, "enqueue", "rq", "--count", "5"])
        fleet.ssh("prod-b", f"cd {app_dir} && rq worker --burst --url {redis_url} high default")

        counted = json.loads(run([*client, "count", "rq"]).stdout)
        assert (counted["enqueued"], counted["done"], counted["missing"], counted["duplicates"]) == (5, 5, 0, 0)
    finally:
        fleet.ssh("prod-b", f"rm -rf {app_dir}", check=False)
        run([*client, "reset", "rq"], check=False)
