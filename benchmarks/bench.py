"""Deploy and restart timings at fleet scale: deploytool next to Capistrano, Ansible, pyinfra and a plain
OpenSSH floor, on the sandbox.

Run through `benchmarks/run` (it installs the peers first). First, without any host, deploytool's start-up:
`fab --list`, and a one-host deploy's time from process start to its first TCP connect (strace). Then for
each fleet size N it boots sandbox hosts bench-01..bench-N (plus bench-redis, the Redis the sample app's
workers use), provisions the sample app's linked file, deploys once untimed (units installed), then times
K rounds of the tools, interleaved and in a rotating order, then K rounds of a no-change worker restart
(`fab workers.restart --batch 100%` against Capistrano's `systemctl restart`). After every run it polls
the bench Redis until every worker of every host registered anew (benchmarks/ready.py: the time until the
workers are ready, the same way for every tool) and checks the end state on every host. Each run's
controller CPU and peak memory (the tool's whole process tree: benchmarks/treemem.py) are recorded. At the
largest N it times `fab workers.restart` (rolling, then --batch 25%) against the workers' own drain times,
and breaks deploytool's time down by stage. The report ends with issue 17's targets, per N.

The sandbox is one per machine: everything here runs under the test suite's session lock, and only the
hosts created here are removed again (also on failure or Ctrl-C).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# benchmarks/ready.py and treemem.py: the script's own directory is first on sys.path
from ready import Expected, Ready, wait_ready  # noqa: E402
from treemem import TreeMemory  # noqa: E402

from deploytool import sandbox  # noqa: E402
from deploytool.inventory import WorkerGroup, load_inventory  # noqa: E402
from deploytool.kinds import KINDS  # noqa: E402
from deploytool.operations.workers import Workers  # noqa: E402
from deploytool.sandbox.lock import SESSION_LOCK, held  # noqa: E402
from deploytool.source import pack, resolve  # noqa: E402
from deploytool.units import render_app  # noqa: E402

BENCH = ROOT / "benchmarks"
OUT = BENCH / "out"
FAB = ROOT / ".venv" / "bin" / "fab"
TOOLS_VENV = BENCH / ".venv"
ANSIBLE_PLAYBOOK = TOOLS_VENV / "bin" / "ansible-playbook"
PY_SPY = TOOLS_VENV / "bin" / "py-spy"
PYINFRA = TOOLS_VENV / "bin" / "pyinfra"
STRACE = shutil.which("strace") or "/usr/bin/strace"
CAP = shutil.which("cap") or "/usr/bin/cap"
SANDBOX_INVENTORY = ROOT / "inventories" / "sandbox.yml"
APP = "sample"
REDIS_HOST = ("bench-redis", "10.213.0.100")
FIRST_OCTET = 101  # bench-01 is 10.213.0.101; the test fleet's .11/.12/.21 are never used
FLOOR = "openssh floor"
PEERS: tuple[str, ...] = ("capistrano", "ansible", "pyinfra")
TOOLS: tuple[str, ...] = ("deploytool", *PEERS, FLOOR)
ROLLING = "deploytool (default rolling restart)"
MAX_HOSTS = 64  # bench-01..bench-64 are 10.213.0.101..164
# The no-change worker restart, every host at once: deploytool's (quiet, stop, start, is-active check)
# against Capistrano's `systemctl restart` of the same units.
RESTARTERS = ("deploytool workers.restart --batch 100%", "capistrano workers:restart")
JOB_SECONDS = "0.05"
READY_TIMEOUT = 120.0  # seconds after a tool exits that its workers may take to register (--ready-timeout)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def host_names(n: int) -> list[str]:
    return [f"bench-{i:02d}" for i in range(1, n + 1)]


def address(name: str) -> str:
    if name == REDIS_HOST[0]:
        return REDIS_HOST[1]
    return f"10.213.0.{FIRST_OCTET + int(name.split('-')[1]) - 1}"


# --- what the tools are given ---------------------------------------------------------------------


# The worker groups the bench hosts run, on the one broker the benchmark boots (bench-redis): the sample
# app's Celery, Dramatiq and AMQP groups need RabbitMQ and the test fleet's services, which do not scale
# to 64 hosts on two cores.
BENCH_GROUPS = ("sidekiq", "rq")
LIGHT_GROUPS = ("sidekiq",)  # --light: the one group that is quieted, so every step still has work to do


def write_inventory(names: Sequence[str], light: bool = False) -> Path:
    """The bench inventory: the sandbox's sample app on N hosts with one process per worker group (so
    32 hosts fit two cores), its Redis on bench-redis. One file name for every N, so the rendered units
    (their header names the inventory file) stay byte-identical as the fleet grows."""
    data = yaml.safe_load(SANDBOX_INVENTORY.read_text())
    app = data["apps"][APP]
    app["source"]["repository"] = str((SANDBOX_INVENTORY.parent / app["source"]["repository"]).resolve())
    app["redis"] = f"redis://{REDIS_HOST[1]}:6379/0"
    # A commit, not HEAD: commits made while the benchmark runs must not change what any tool deploys.
    app["source"]["revision"] = subprocess.run(
        ["git", "-C", app["source"]["repository"], "rev-parse", "--verify", app["source"]["revision"] + "^{commit}"],
        capture_output=True, text=True, check=True).stdout.strip()
    # --light: fewer processes per host, for fleets beyond 32 hosts on two cores
    groups = LIGHT_GROUPS if light else BENCH_GROUPS
    app["workers"] = {k: v for k, v in app["workers"].items() if k in groups}
    for group in app["workers"].values():
        group["processes"] = 1
    common = {"user": "deploy", "known_hosts": str(sandbox.KNOWN_HOSTS), "identity": str(sandbox.CLIENT_KEY),
              "connect_timeout": 30}
    data["hosts"] = {REDIS_HOST[0]: {"address": REDIS_HOST[1], "roles": ["redis"], **common}}
    for name in names:
        data["hosts"][name] = {"address": address(name), "roles": ["app", "worker"], **common}
    path = OUT / "inventories" / "bench.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Generated by benchmarks/bench.py from inventories/sandbox.yml.\n" + yaml.safe_dump(data))
    return path


@dataclass
class Setup:
    """Everything the tools are given for one fleet size, derived from the one inventory."""

    inventory: Path
    names: list[str]
    tarball: Path
    commit: str
    deploy_to: str
    keep_releases: int
    units: list[str]  # instances to run, e.g. sample-sidekiq@1.service
    target: str
    quiet: list[str]  # unit globs of the groups quieted with SIGTSTP
    linked_files: list[str]
    linked_dirs: list[str]
    expected: list[Expected]  # the worker processes each host registers with the broker when ready
    unit_sha: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> unit file -> sha256
    unit_files: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> unit file -> local path
    cap_config: Path = OUT / "capistrano.json"
    ansible_vars: Path = OUT / "ansible" / "vars.json"
    ansible_hosts: Path = OUT / "ansible" / "hosts.ini"


# How each kind's worker is told apart in the broker (benchmarks/ready.py): Sidekiq by its instance's tag
# (deploytool.kinds: `-g app-group-N`), one process each; RQ by its queues, comma-joined as RQ stores them.
READY_KEYS: dict[str, Callable[[str, WorkerGroup], list[Expected]]] = {
    "sidekiq": lambda app, g: [Expected("sidekiq", f"{app}-{g.name}-{i}") for i in range(1, g.processes + 1)],
    "rq": lambda app, g: [Expected("rq", ",".join(KINDS["rq"].queue_flags(g.queues)), g.processes)],
}


def expected_workers(groups: Sequence[WorkerGroup], app: str) -> list[Expected]:
    return [e for g in groups for e in READY_KEYS[g.kind](app, g)]


def prepare(names: list[str], light: bool = False) -> Setup:
    path = write_inventory(names, light)
    inv = load_inventory(path)
    app = inv.apps[APP]
    revision = resolve(app, None)
    (OUT / "code").mkdir(parents=True, exist_ok=True)
    tarball = pack(app, revision, OUT / "code")  # the very bytes `fab deploy` uploads
    tarball = tarball.replace(OUT / "code" / "sample.tar.gz")
    w = Workers(inv, names[0], app)
    setup = Setup(path, names, tarball, revision.commit, app.deploy_to, app.keep_releases, w.units, w.target,
                  [f"{app.name}-{g.name}@*.service" for g in w.groups if g.kind == "sidekiq"],
                  list(app.linked_files), list(app.linked_dirs), expected_workers(w.groups, app.name))
    units_dir = OUT / "units"
    shutil.rmtree(units_dir, ignore_errors=True)
    hosts_cfg: dict[str, Any] = {}
    for name in names:
        d = units_dir / name
        d.mkdir(parents=True)
        files = {}
        for u in render_app(inv, name, app):
            (d / u.name).write_text(u.content)
            files[u.name] = str(d / u.name)
            setup.unit_files.setdefault(name, {})[u.name] = str(d / u.name)
            setup.unit_sha.setdefault(name, {})[u.name] = u.sha256
        hosts_cfg[name] = {"address": address(name), "files": files, "units": setup.units,
                           "target": setup.target, "quiet": setup.quiet}
    setup.cap_config.write_text(json.dumps({
        "deploy_to": app.deploy_to, "keep_releases": app.keep_releases, "linked_files": list(app.linked_files),
        "linked_dirs": list(app.linked_dirs), "user": "deploy", "identity": str(sandbox.CLIENT_KEY),
        "known_hosts": str(sandbox.KNOWN_HOSTS), "hosts": hosts_cfg}, indent=1))
    setup.ansible_hosts.parent.mkdir(parents=True, exist_ok=True)
    setup.ansible_hosts.write_text(
        "[app]\n" + "".join(f"{n} ansible_host={address(n)}\n" for n in names)
        + f"\n[app:vars]\nansible_user=deploy\nansible_ssh_private_key_file={sandbox.CLIENT_KEY}\n")
    setup.ansible_vars.write_text(json.dumps({
        "deploy_to": app.deploy_to, "keep_releases": app.keep_releases, "linked_files": list(app.linked_files),
        "linked_dirs": list(app.linked_dirs), "tarball": str(tarball), "revision": revision.commit,
        "units_dir": str(units_dir), "unit_files": sorted(setup.unit_sha[names[0]]), "units": setup.units,
        "target": setup.target, "quiet": setup.quiet}, indent=1))
    return setup


# --- running things -------------------------------------------------------------------------------


def ssh(host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sandbox.ssh_argv(address(host), command, connect_timeout=30), capture_output=True,
                          text=True, timeout=timeout, check=False)


def each(names: Sequence[str], fn: Callable[[str], Any]) -> dict[str, Any]:
    with cf.ThreadPoolExecutor(max_workers=min(32, max(1, len(names)))) as pool:
        return dict(zip(names, pool.map(fn, names), strict=True))


@dataclass
class Run:
    tool: str
    n: int
    seconds: float
    cpu: float  # controller CPU seconds (user+sys) of the tool and its child processes
    ok: bool
    output: str
    stdout: str
    t0: float  # wall clock (epoch) bounds, for the hosts' journals
    t1: float
    rss: float = 0.0  # peak RSS of the tool's largest process (its VmHWM: benchmarks/treemem.py), MiB
    tree: float = 0.0  # peak of the summed RSS of the tool's process tree (sampled: benchmarks/treemem.py), MiB
    ready: Ready | None = None  # when every worker was registered anew (benchmarks/ready.py); None: not asked


def timed(tool: str, n: int, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
          logname: str = "") -> Run:
    t0 = time.time()
    m0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    streams: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: streams.__setitem__(k, f.read()))
               for k, f in (("out", p.stdout), ("err", p.stderr))]
    for t in readers:
        t.start()
    memory = TreeMemory(p.pid)
    memory.start()
    # wait4, not wait: the child's own CPU (with the descendants it reaped), never another thread's
    # children's. Not its ru_maxrss: that includes this process's own size when it spawned the tool.
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - m0
    t1 = time.time()
    tree_kib = memory.stop()
    for t in readers:
        t.join()
    stdout, stderr = streams.get("out", ""), streams.get("err", "")
    cpu = usage.ru_utime + usage.ru_stime
    if logname:
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        (OUT / "logs" / f"{logname}.log").write_text(f"$ {shlex.join(argv)}\n{stdout}\n--- stderr\n{stderr}")
    return Run(tool, n, seconds, cpu, p.returncode == 0, stdout + stderr, stdout, t0, t1,
               memory.largest_kib / 1024, tree_kib / 1024)


def restart_batch_option() -> bool:
    r = subprocess.run([str(FAB), "-r", str(ROOT), "deploy", "--help"], capture_output=True, text=True, check=False)
    return "--restart-batch" in r.stdout


# The peers restart every host's workers at once; deploytool's deploy, by default, one host at a time
# (--restart-batch, default 1). The compared run does what the peers do; the default is timed beside it.
ALL_AT_ONCE = ["--restart-batch", "100%"] if restart_batch_option() else []


def run_deploytool(s: Setup, label: str) -> Run:
    return timed("deploytool", len(s.names),
                 [str(FAB), "-r", str(ROOT), "deploy", "--inventory", str(s.inventory), "--json", *ALL_AT_ONCE],
                 ROOT, logname=label)


def run_deploytool_rolling(s: Setup, label: str) -> Run:
    return timed(ROLLING, len(s.names),
                 [str(FAB), "-r", str(ROOT), "deploy", "--inventory", str(s.inventory), "--json"], ROOT,
                 logname=label)


def run_capistrano(s: Setup, label: str) -> Run:
    env = {"BENCH_CONFIG": str(s.cap_config), "BENCH_TARBALL": str(s.tarball), "BENCH_REVISION": s.commit,
           "BENCH_CAP_LOG": str(OUT / "logs" / f"{label}.capistrano.log")}
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    return timed("capistrano", len(s.names), [CAP, "bench", "deploy"], BENCH / "capistrano", env, logname=label)


def run_ansible(s: Setup, label: str) -> Run:
    control = Path(tempfile.mkdtemp(prefix="bench-ansible-cp-"))
    release = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    env = {"ANSIBLE_CONFIG": str(BENCH / "ansible" / "ansible.cfg"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
           "ANSIBLE_LOCAL_TEMP": str(control / "tmp"), "ANSIBLE_FORCE_COLOR": "0"}
    try:
        return timed("ansible", len(s.names),
                     [str(ANSIBLE_PLAYBOOK), "-i", str(s.ansible_hosts), "-f", str(len(s.names)),
                      "-e", f"@{s.ansible_vars}", "-e", f"release={release}", str(BENCH / "ansible" / "deploy.yml")],
                     BENCH / "ansible", env, logname=label)
    finally:
        # ControlPersist keeps a master per host after the playbook: end exactly those, by their socket.
        for sock in control.iterdir():
            if sock.is_socket():
                subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                               capture_output=True, check=False, timeout=30)
        shutil.rmtree(control, ignore_errors=True)


def release_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def run_pyinfra(s: Setup, label: str) -> Run:
    env = {"BENCH_CONFIG": str(s.cap_config), "BENCH_TARBALL": str(s.tarball), "BENCH_REVISION": s.commit,
           "BENCH_RELEASE": release_now()}
    # -y: no prompt; one connection per host, all hosts at once (pyinfra's default caps it at 20 per CPU).
    return timed("pyinfra", len(s.names),
                 [str(PYINFRA), "-y", "--parallel", str(len(s.names)), "inventory.py", "deploy.py"],
                 BENCH / "pyinfra", env, logname=label)


def floor_script(s: Setup, name: str, release: str) -> str:
    """The whole deploy of one host as one shell script, the code tarball on its stdin: what the peers do,
    without their checks, lock, facts or reporting. The lower bound a tool doing this work over SSH has."""
    q = shlex.quote
    d = s.deploy_to
    r = f"{d}/releases/{release}"
    lines = ["set -e", f"cd {q(d)}",
             "mkdir -p releases " + " ".join(q(f"shared/{x}") for x in s.linked_dirs),
             f"mkdir {q(r)}", f"tar -xzf - -C {q(r)}", f"printf '%s\\n' {q(s.commit)} > {q(r + '/REVISION')}"]
    lines += [f"rm -rf {q(r + '/' + x)} && ln -s {q(d + '/shared/' + x)} {q(r + '/' + x)}" for x in s.linked_dirs]
    lines += [f"mkdir -p {q(os.path.dirname(r + '/' + f))} && ln -sfn {q(d + '/shared/' + f)} {q(r + '/' + f)}"
              for f in s.linked_files]
    lines.append(shlex.join(["sudo", "-n", "systemctl", "kill", "--kill-whom=main", "--signal=SIGTSTP", *s.quiet]))
    lines.append(f"ln -sfn {q(r)} .current.{release} && mv -T .current.{release} current")
    lines.append("changed=")
    for unit, path in sorted(s.unit_files[name].items()):
        text = q(Path(path).read_text())
        dest = q(f"/etc/systemd/system/{unit}")
        lines.append(f"printf '%s' {text} | cmp -s - {dest} || "
                     f"{{ printf '%s' {text} | sudo -n tee {dest} >/dev/null; changed=1; }}")
    units = " ".join(q(u) for u in [s.target, *s.units])
    lines += ['[ -z "$changed" ] || sudo -n systemctl daemon-reload',
              f'[ "$(systemctl is-enabled {units} | sort -u)" = enabled ] || sudo -n systemctl enable --quiet {units}',
              "sudo -n systemctl restart " + " ".join(q(u) for u in s.units),
              "cur=$(basename \"$(readlink current)\")",
              f"ls -1 releases | grep -E '^[0-9]{{14}}$' | sort -r | tail -n +{s.keep_releases + 1} | "
              'while read -r x; do [ "$x" = "$cur" ] || rm -rf "releases/$x"; done',
              f"printf '%s\\n' \"$(date -u +%Y-%m-%dT%H:%M:%S+00:00) {s.commit} deployed as release {release} "
              'by openssh" >> revisions.log']
    return "\n".join(lines)


def run_floor(s: Setup, label: str) -> Run:
    """One `ssh` per host, all hosts at once, each sending floor_script with the tarball on stdin."""
    release = release_now()
    (OUT / "floor").mkdir(parents=True, exist_ok=True)
    for name in s.names:
        (OUT / "floor" / f"{name}.sh").write_text(floor_script(s, name, release))
    launcher = "\n".join([
        'fail=0; for h in "$@"; do',
        '  addr=${h#*=}; name=${h%%=*}',
        '  "$SSH" "${SSH_OPTS[@]}" "deploy@$addr" -- "$(cat "$SCRIPTS/$name.sh")" < "$TARBALL" &',
        "done",
        "for j in $(jobs -p); do wait $j || fail=1; done",
        "exit $fail"])
    opts = sandbox.ssh_argv("ADDR", "true", connect_timeout=30)
    ssh_opts = opts[1:opts.index("deploy@ADDR")]
    argv = ["bash", "-c", f"SSH_OPTS=({shlex.join(ssh_opts)}); {launcher}", "floor",
            *(f"{n}={address(n)}" for n in s.names)]
    env = {"SSH": opts[0], "SCRIPTS": str(OUT / "floor"), "TARBALL": str(s.tarball)}
    return timed(FLOOR, len(s.names), argv, ROOT, env, logname=label)


RUNNERS: dict[str, Callable[[Setup, str], Run]] = {
    "deploytool": run_deploytool, "capistrano": run_capistrano, "ansible": run_ansible,
    "pyinfra": run_pyinfra, FLOOR: run_floor, ROLLING: run_deploytool_rolling,
}


def run_restart_deploytool(s: Setup, label: str) -> Run:
    return timed(RESTARTERS[0], len(s.names),
                 [str(FAB), "-r", str(ROOT), "workers.restart", "--inventory", str(s.inventory), "--json",
                  "--batch", "100%"], ROOT, logname=label)


def run_restart_capistrano(s: Setup, label: str) -> Run:
    env = {"BENCH_CONFIG": str(s.cap_config), "BENCH_CAP_LOG": str(OUT / "logs" / f"{label}.capistrano.log"),
           "BENCH_TARBALL": str(s.tarball), "BENCH_REVISION": s.commit}
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    return timed(RESTARTERS[1], len(s.names), [CAP, "bench", "workers:restart"], BENCH / "capistrano", env,
                 logname=label)


RESTART_RUNNERS: dict[str, Callable[[Setup, str], Run]] = {
    RESTARTERS[0]: run_restart_deploytool, RESTARTERS[1]: run_restart_capistrano,
}


# --- the hosts' state -----------------------------------------------------------------------------


def host_state_script(s: Setup, since: float | None = None, until: float | None = None) -> str:
    units = " ".join(s.units)
    files = " ".join(sorted(s.unit_sha[s.names[0]]))
    lines = [
        f"cd {s.deploy_to} || exit 3",
        'echo "current=$(readlink current)"',
        'echo "revision=$(cat current/REVISION 2>/dev/null)"',
        'for f in config/app.env log tmp; do echo "link:$f=$(readlink current/$f)"; done',
        "echo \"releases=$(ls releases | grep -cE '^[0-9]{14}$')\"",
        'echo "revlog=$(wc -l < revisions.log)"',
        'echo "lock=$(test -e .deploy.lock && echo held || echo free)"',
        f'echo "active=$(systemctl is-active {units} {s.target} | tr "\\n" " ")"',
        f'echo "enabled=$(systemctl is-enabled {units} {s.target} | tr "\\n" " ")"',
        f'echo "started=$(systemctl show -p ActiveEnterTimestampMonotonic --value {units} | tr "\\n" " ")"',
        f'echo "unitsha=$(cd /etc/systemd/system && sha256sum {files} | tr "\\n" " ")"',
    ]
    if since is not None and until is not None:
        j = f"sudo -n journalctl -q -o cat --since=@{since:.3f} --until=@{until:.3f}"
        lines += [
            f"echo \"sshd_conn=$({j} -t sshd | grep -c 'Accepted publickey')\"",
            f"echo \"sudo=$({j} -t sudo | grep -c 'COMMAND=')\"",
        ]
    return "\n".join(lines)


def read_state(s: Setup, name: str, since: float | None = None, until: float | None = None) -> dict[str, str]:
    r = ssh(name, host_state_script(s, since, until))
    state = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    if r.returncode != 0:
        state["error"] = f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
    return state


def check_state(s: Setup, name: str, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What is wrong with a host after a deploy, compared with its state before; empty if all is right."""
    bad = []
    if "error" in after:
        return [after["error"]]
    cur, prev = after.get("current", ""), before.get("current", "")
    rel = cur.rsplit("/", 1)[-1]
    if not cur.startswith(f"{s.deploy_to}/releases/") or not (rel > prev.rsplit("/", 1)[-1]):
        bad.append(f"current {cur!r} is not a release newer than {prev!r}")
    if after.get("revision") != s.commit:
        bad.append(f"REVISION {after.get('revision')!r} != {s.commit[:12]}")
    for f in ("config/app.env", "log", "tmp"):
        if after.get(f"link:{f}") != f"{s.deploy_to}/shared/{f}":
            bad.append(f"{f} links to {after.get(f'link:{f}')!r}")
    if not 1 <= int(after.get("releases", "0")) <= s.keep_releases:
        bad.append(f"{after.get('releases')} releases kept (keep_releases {s.keep_releases})")
    if int(after.get("revlog", "0")) != int(before.get("revlog", "0") or 0) + 1:
        bad.append(f"revisions.log has {after.get('revlog')} lines, was {before.get('revlog')}")
    if after.get("lock") != "free":
        bad.append("deploy lock left behind")
    if after.get("active", "").split() != ["active"] * (len(s.units) + 1):
        bad.append(f"units not active: {after.get('active')}")
    if after.get("enabled", "").split() != ["enabled"] * (len(s.units) + 1):
        bad.append(f"units not enabled: {after.get('enabled')}")
    old, new = before.get("started", "").split(), after.get("started", "").split()
    if len(new) != len(s.units) or any(int(b) >= int(a) for b, a in zip(old, new, strict=False)):
        bad.append(f"workers not restarted (started {old} -> {new})")
    words = after.get("unitsha", "").split()  # sha256sum: "SUM  NAME" per file
    if dict(zip(words[1::2], words[0::2], strict=False)) != s.unit_sha[name]:
        bad.append("unit files differ from deploytool's rendering")
    return bad


def check_restarted(s: Setup, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What is wrong with a host after a worker restart: every unit active again, each started anew."""
    if "error" in after:
        return [after["error"]]
    bad = []
    if after.get("active", "").split() != ["active"] * (len(s.units) + 1):
        bad.append(f"units not active: {after.get('active')}")
    old, new = before.get("started", "").split(), after.get("started", "").split()
    if len(new) != len(s.units) or any(int(b) >= int(a) for b, a in zip(old, new, strict=False)):
        bad.append(f"workers not restarted (started {old} -> {new})")
    return bad


def wait_for_new_second(states: dict[str, dict[str, str]]) -> None:
    """Tools that name the release from the controller's clock (whole seconds) must not meet the release
    of the run before them: wait, untimed, until the clock is past the newest release on any host."""
    newest = max((st.get("current", "").rsplit("/", 1)[-1] for st in states.values()), default="")
    deadline = time.monotonic() + 5
    while release_now() <= newest and time.monotonic() < deadline:
        time.sleep(0.05)


# --- the fleet ------------------------------------------------------------------------------------


PROVISION = (
    # The sample app's linked file, as an operator provisions it once per host (like the tests do).
    "mkdir -p {deploy_to}/shared/config && "
    "printf 'REDIS_URL={redis}\\nSAMPLE_JOB_SECONDS={job}\\n' > {deploy_to}/shared/config/app.env && "
    # Ansible's become runs `sudo /bin/sh -c ...`, which the sandbox's narrow sudoers refuses: bench
    # hosts give the deploy user full sudo (deploytool and Capistrano only use what the sandbox allows).
    "echo 'deploy ALL=(ALL) NOPASSWD: ALL' | sudo -n tee /etc/sudoers.d/bench >/dev/null && "
    # The deploy user's systemd manager stays up between logins: without linger, every tool's first
    # login after a 10 s pause starts user@.service again, a cost that depends on run spacing, not tool.
    "sudo -n loginctl enable-linger deploy"
)


def boot(names: list[str], booted: list[str]) -> None:
    wanted = [REDIS_HOST[0], *names]
    new = [n for n in wanted if n not in booted]
    if not new:
        return
    hosts = [sandbox.sandbox_host(n, address(n), ["redis"] if n == REDIS_HOST[0] else ["app", "worker"])
             for n in wanted]
    t0 = time.monotonic()
    booted.extend(new)  # recorded first: down() must remove them even if up() fails half-way
    sandbox.up(hosts)
    log(f"booted {len(new)} host(s) in {time.monotonic() - t0:.1f}s")


def provision(s: Setup, names: list[str]) -> None:
    cmd = PROVISION.format(deploy_to=s.deploy_to, redis=f"redis://{REDIS_HOST[1]}:6379/0", job=JOB_SECONDS)
    results = each(names, lambda n: ssh(n, cmd))
    failed = {n: r.stderr.strip() for n, r in results.items() if r.returncode != 0}
    if failed:
        raise SystemExit(f"provisioning failed: {failed}")


# --- start-up: before the first connection -------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): a connect there is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def startup_inventory(port: int) -> Path:
    """The bench inventory with bench-01 pointing at a closed loopback port: a one-host deploy does all it
    does before connecting (inventory, revision, tarball, units), then fails at its first connect."""
    data = yaml.safe_load(write_inventory(["bench-01"]).read_text())
    data["hosts"]["bench-01"].update(address="127.0.0.1", port=port)
    path = OUT / "inventories" / "startup.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def tree_at(rev: str) -> Path:
    """deploytool's tree at a git revision, unpacked into a temporary directory (no git state changed)."""
    where = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def first_connect(argv: list[str], port: int, tree: Path, env: dict[str, str]) -> tuple[float | None, float]:
    """Seconds from starting argv to its first TCP connect to the port (strace, connect calls only, filtered
    in the kernel), and to its exit."""
    trace = OUT / "startup" / "connect.trace"
    trace.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    subprocess.run([STRACE, "-f", "--seccomp-bpf", "-ttt", "-e", "trace=connect", "-o", str(trace), *argv],
                   capture_output=True, cwd=tree, env={**os.environ, **env}, check=False, timeout=120)
    total = time.time() - t0
    for line in trace.read_text().splitlines():
        if f"htons({port})" in line:
            return float(line.split()[1]) - t0, total
    return None, total


def import_seconds(module: str, tree: Path, env: dict[str, str]) -> float | None:
    """Cumulative import time of a module of a tree (python -X importtime, run in the tree: `-c` puts the
    working directory first on sys.path), in seconds."""
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-X", "importtime", "-c", f"import {module}"],
                       capture_output=True, text=True, cwd=tree, env={**os.environ, **env}, check=False)
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == module:
            return int(parts[1]) / 1e6
    return None


def measure_startup(res: Results, repeat: int, baseline: str | None) -> None:
    """`fab --list` (wall and CPU), the import of the task collection, and a one-host deploy's time to its
    first connection; of this tree and, with a baseline revision, of that revision's tree, interleaved."""
    port = closed_port()
    inventory = startup_inventory(port)
    trees: dict[str, tuple[Path, dict[str, str]]] = {"now": (ROOT, {})}
    if baseline:
        base = tree_at(baseline)
        trees[f"at {baseline}"] = (base, {"PYTHONPATH": str(base)})  # ahead of the editable install
    samples: dict[str, dict[str, list[float]]] = {t: defaultdict(list) for t in trees}
    try:
        for tree, env in trees.values():  # untimed: a fresh tree compiles its bytecode on the first run
            timed("fab --list", 1, [str(FAB), "-r", str(tree), "--list"], tree, env)
        for _ in range(max(5, repeat)):
            for label, (tree, env) in trees.items():
                run = timed("fab --list", 1, [str(FAB), "-r", str(tree), "--list"], tree, env)
                samples[label]["fab --list s"].append(run.seconds)
                samples[label]["fab --list CPU s"].append(run.cpu)
                imp = import_seconds("deploytool.tasks", tree, env)
                if imp is not None:
                    samples[label]["import deploytool.tasks s"].append(imp)
                first, _total = first_connect([str(FAB), "-r", str(tree), "deploy", "--inventory", str(inventory),
                                               "--host", "bench-01", *ALL_AT_ONCE], port, tree, env)
                if first is not None:
                    samples[label]["one-host deploy: start to first connect s"].append(first)
            version = timed("fab --version", 1, [str(FAB), "--version"], ROOT)
            samples["now"]["fab --version s (Fabric alone)"].append(version.seconds)
    finally:
        for tree, _env in trees.values():
            if tree != ROOT:
                shutil.rmtree(tree, ignore_errors=True)
    res.startup = {label: {k: statistics.median(v) for k, v in m.items()} for label, m in samples.items()}
    for label, m in res.startup.items():
        log(f"start-up ({label}): " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))


def startup_table(res: Results) -> list[str]:
    labels = list(res.startup)
    keys = list(dict.fromkeys(k for m in res.startup.values() for k in m))
    lines = ["| measure (median) | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(fmt3(res.startup[lb].get(k)) for lb in labels) + " |")
    return lines


def fmt3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# --- statistics and printing ----------------------------------------------------------------------


def fmt(x: float) -> str:
    return f"{x:.2f}"


def summary_table(runs: list[Run], sizes: list[int]) -> list[str]:
    lines = ["| N | tool | median s | min s | max s | runs | controller CPU s (median) | "
             "controller peak memory MiB (process tree, median) | deploytool/tool (median) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        med: dict[str, float] = {}
        for tool in TOOLS:
            xs = [r.seconds for r in runs if r.n == n and r.tool == tool and r.ok]
            if xs:
                med[tool] = statistics.median(xs)
        for tool in (*TOOLS, ROLLING):
            rs = [r for r in runs if r.n == n and r.tool == tool and r.ok]
            if not rs:
                continue
            xs = [r.seconds for r in rs]
            ratio = "1.00" if tool == "deploytool" else "-" if tool == ROLLING else (
                f"{med['deploytool'] / med[tool]:.2f}" if "deploytool" in med else "-")
            lines.append(f"| {n} | {tool} | {fmt(statistics.median(xs))} | {fmt(min(xs))} | {fmt(max(xs))} | "
                         f"{len(xs)} | {fmt(statistics.median(r.cpu for r in rs))} | "
                         f"{statistics.median(r.tree for r in rs):.0f} | {ratio} |")
    return lines


# --- the benchmark --------------------------------------------------------------------------------


@dataclass
class Results:
    sizes: list[int]
    repeat: int
    runs: list[Run] = field(default_factory=list)
    counts: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    stages: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)
    restart: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    restarts: list[Run] = field(default_factory=list)  # the no-change worker restarts, every N
    startup: dict[str, Any] = field(default_factory=dict)
    ready_timeout: float = READY_TIMEOUT


def await_workers(s: Setup, run: Run, res: Results, label: str) -> None:
    """After a run that exited well: poll the broker until every host's workers registered anew since the
    run started (benchmarks/ready.py), at most `res.ready_timeout` seconds; a timeout is a failure."""
    if not run.ok:
        return
    run.ready = wait_ready((REDIS_HOST[1], 6379), s.names, s.expected, run.t0, res.ready_timeout)
    if run.ready.seconds is None:
        gaps = run.ready.missing
        what = (f"{label}: workers not ready {res.ready_timeout:.0f}s after the tool exited: "
                f"{'; '.join(gaps[:8])}{f' (+{len(gaps) - 8} more)' if len(gaps) > 8 else ''}")
        res.failures.append(what)
        log(f"NOT READY {what}")


def ready_note(run: Run) -> str:
    if run.ready is None:
        return ""
    return f"  ready {run.ready.seconds:6.2f}s" if run.ready.seconds is not None else "  NOT READY"


def measure_size(s: Setup, res: Results, first: bool) -> None:
    n = len(s.names)
    states = each(s.names, lambda h: read_state(s, h))
    rounds = res.repeat + (1 if first else 0)  # a first, untimed round warms the controller's caches
    for k in range(rounds):
        tools = (*TOOLS, ROLLING) if ALL_AT_ONCE else TOOLS
        order = tools[k % len(tools):] + tools[:k % len(tools)]
        for tool in order:
            label = f"n{n}-r{k}-{tool.split()[0]}{'-rolling' if tool == ROLLING else ''}"
            wait_for_new_second(states)
            run = RUNNERS[tool](s, label)
            await_workers(s, run, res, label)
            after = each(s.names, partial(read_state, s, since=run.t0, until=run.t1))
            bad = {h: check_state(s, h, states[h], after[h]) for h in s.names}
            bad = {h: b for h, b in bad.items() if b}
            states = after
            warm = first and k == 0
            tag = " (warm-up, not counted)" if warm else ""
            if not run.ok or bad:
                run.ok = False
                what = f"{label}: exit ok={run.ok}; " + "; ".join(f"{h}: {', '.join(b)}" for h, b in bad.items())
                res.failures.append(what[:2000])
                log(f"FAILED {what[:600]}\n    output tail: {run.output[-800:]}")
            else:
                log(f"N={n} round {k} {tool:<13} {run.seconds:6.2f}s  cpu {run.cpu:5.2f}s  "
                    f"mem {run.tree:5.0f}MiB{ready_note(run)}  end state ok{tag}")
            if warm:
                continue
            res.runs.append(run)
            per_host = [{"sshd_conn": float(a.get("sshd_conn", "nan")), "sudo": float(a.get("sudo", "nan"))}
                        for a in after.values()]
            if tool in ("deploytool", ROLLING) and run.ok:
                report = json.loads(run.stdout)
                if tool == "deploytool":
                    res.stages[n] += report["hosts"]
                for ph, h in zip(per_host, report["hosts"], strict=False):
                    ph["commands"] = h["commands"]
                    ph["connections"] = h["connections"]
            if tool in PEERS and run.ok:
                for ph, h in zip(per_host, after, strict=True):
                    ph["commands"] = peer_commands(tool, label, run, h)
            for ph in per_host:
                res.counts[f"{n}:{tool}"].append(ph)


def peer_commands(tool: str, label: str, run: Run, host: str) -> float:
    """Remote commands a peer ran on one host, from its own output: Capistrano's `Running ... on ADDR`
    lines (uploads not counted), Ansible's task results (PLAY RECAP ok=, loops count once), pyinfra's
    operations that ran commands (`[host] Success`; its fact reads not counted)."""
    if tool == "capistrano":
        text = (OUT / "logs" / f"{label}.capistrano.log").read_text(errors="replace")
        return float(sum(1 for ln in text.splitlines() if " Running " in ln and ln.endswith(f" on {address(host)}")))
    if tool == "ansible":
        for ln in run.stdout.splitlines():
            if ln.startswith(f"{host} ") and "ok=" in ln:
                return float(ln.split("ok=")[1].split()[0])
        return float("nan")
    return float(run.output.count(f"[{host}] Success"))


def measure_restart_compare(s: Setup, res: Results) -> None:
    """K rounds of a no-change worker restart of every host at once, deploytool and Capistrano interleaved,
    every host checked (all units active again, each started anew) after every run."""
    n = len(s.names)
    states = each(s.names, lambda h: read_state(s, h))
    for k in range(res.repeat):
        order = RESTARTERS[k % 2:] + RESTARTERS[:k % 2]
        for tool in order:
            label = f"n{n}-r{k}-restart-{tool.split()[0]}"
            run = RESTART_RUNNERS[tool](s, label)
            await_workers(s, run, res, label)
            after = each(s.names, partial(read_state, s, since=run.t0, until=run.t1))
            bad = {h: b for h in s.names if (b := check_restarted(s, states[h], after[h]))}
            states = after
            if not run.ok or bad:
                what = f"{label}: exit ok={run.ok}; " + "; ".join(f"{h}: {', '.join(b)}" for h, b in bad.items())
                run.ok = False
                res.failures.append(what[:2000])
                log(f"FAILED {what[:600]}\n    output tail: {run.output[-800:]}")
            else:
                log(f"N={n} round {k} {tool:<40} {run.seconds:6.2f}s  cpu {run.cpu:5.2f}s{ready_note(run)}  "
                    "workers restarted")
            res.restarts.append(run)


def restart_drains(s: Setup, since: float) -> dict[str, dict[str, float]]:
    """Per host, from systemd's own timestamps of the last stop and start of each worker unit: drain =
    first unit leaving active .. last unit fully stopped; span = first leaving active .. last active again."""
    props = "Id,ActiveExitTimestampMonotonic,InactiveEnterTimestampMonotonic,ActiveEnterTimestampMonotonic"
    cmd = f"systemctl show -p {props} {' '.join(s.units)}"

    def one(h: str) -> dict[str, float]:
        r = ssh(h, cmd)
        blocks = [dict(ln.split("=", 1) for ln in b.splitlines() if "=" in ln)
                  for b in r.stdout.strip().split("\n\n")]
        exit_ = min(int(b["ActiveExitTimestampMonotonic"]) for b in blocks)
        inactive = max(int(b["InactiveEnterTimestampMonotonic"]) for b in blocks)
        active = max(int(b["ActiveEnterTimestampMonotonic"]) for b in blocks)
        units = {b.get("Id", str(i)): (int(b["InactiveEnterTimestampMonotonic"])
                                       - int(b["ActiveExitTimestampMonotonic"])) / 1e6 for i, b in enumerate(blocks)}
        return {"drain": (inactive - exit_) / 1e6, "span": (active - exit_) / 1e6, **units}

    return each(s.names, one)


def measure_restart(s: Setup, res: Results) -> None:
    n = len(s.names)
    for label, extra in (("rolling (default, 1 host at a time)", []), ("--batch 25%", ["--batch", "25%"])):
        run = timed("workers.restart", n, [str(FAB), "-r", str(ROOT), "workers.restart", "--inventory",
                                           str(s.inventory), "--json", *extra], ROOT,
                    logname=f"n{n}-workers-restart{'-batch' if extra else ''}")
        drains = restart_drains(s, run.t0)
        batch = max(1, n * 25 // 100) if extra else 1
        groups = [s.names[i:i + batch] for i in range(0, n, batch)]
        floor = sum(max(drains[h]["drain"] for h in g) for g in groups)
        res.restart[label] = {
            "seconds": run.seconds, "ok": run.ok, "cpu": run.cpu,
            "sum_drain": sum(d["drain"] for d in drains.values()),
            "sum_span": sum(d["span"] for d in drains.values()),
            "median_drain": statistics.median(d["drain"] for d in drains.values()),
            "max_drain": max(d["drain"] for d in drains.values()),
            "floor": floor, "batches": len(groups),
            "per_unit_median": {u: statistics.median(d[u] for d in drains.values()) for u in s.units},
        }
        log(f"workers.restart {label}: {run.seconds:.2f}s ok={run.ok}; sum of per-host drains "
            f"{res.restart[label]['sum_drain']:.2f}s")
        if not run.ok:
            res.failures.append(f"workers.restart {label}: {run.output[-600:]}")


def measure_profile(s: Setup, res: Results) -> None:
    """One extra deploy (not counted) under py-spy: where the controller's CPU goes (on-CPU samples of
    every thread of `fab`), summed by function."""
    n = len(s.names)
    raw = OUT / f"profile-n{n}.txt"
    run = timed("deploytool", n, [str(PY_SPY), "record", "--format", "raw", "--rate", "200", "--output", str(raw),
                                  "--", str(FAB), "-r", str(ROOT), "deploy", "--inventory", str(s.inventory),
                                  "--json", *ALL_AT_ONCE], ROOT, logname=f"n{n}-profiled-deploy")
    # py-spy may exit non-zero after its child did ("No child process" here): judge fab by its report.
    try:
        report = json.loads(run.stdout[run.stdout.index("{"):run.stdout.rindex("}") + 1])
        fab_ok = all(h["status"] == "ok" for h in report["hosts"])
    except (ValueError, KeyError):
        fab_ok = False
    if not fab_ok or not raw.exists():
        res.failures.append(f"profiled deploy: {run.output[-600:]}")
        return
    own: dict[str, int] = defaultdict(int)
    incl: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")[1:]]
        if frames:
            own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    res.profile = {"seconds": run.seconds, "cpu": run.cpu, "samples": total, "rate": 200,
                   "own": sorted(own.items(), key=lambda kv: -kv[1])[:15],
                   "incl": sorted(incl.items(), key=lambda kv: -kv[1])[:40]}
    log(f"profiled deploy at N={n}: {run.seconds:.2f}s, {total} on-CPU samples -> {raw}")


def stage_table(hosts: list[dict[str, Any]]) -> list[str]:
    per: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []
    for h in hosts:
        seen: dict[str, float] = defaultdict(float)
        for st in h["stages"]:
            seen[st["name"]] += st["seconds"]
            if st["name"] not in order:
                order.append(st["name"])
        for k, v in seen.items():
            per[k].append(v)
    total = [sum(st["seconds"] for st in h["stages"]) for h in hosts]
    lines = ["| stage | median s per host | max s | share of a host's time |", "|---|---:|---:|---:|"]
    for name in order:
        xs = per[name]
        lines.append(f"| {name} | {fmt(statistics.median(xs))} | {fmt(max(xs))} | "
                     f"{100 * sum(xs) / sum(total):.0f}% |")
    lines.append(f"| (all stages) | {fmt(statistics.median(total))} | {fmt(max(total))} | 100% |")
    return lines


def counts_table(res: Results) -> list[str]:
    lines = ["| N | tool | SSH connections per host (sshd's log) | sudo commands per host (host's journal) | "
             "remote commands per host (the tool's own report or log) |",
             "|---:|---|---:|---:|---:|"]
    for n in res.sizes:
        for tool in (*TOOLS, ROLLING):
            xs = res.counts.get(f"{n}:{tool}", [])
            if not xs:
                continue

            def med(key: str, xs: list[dict[str, float]] = xs) -> str:
                vals = [x[key] for x in xs if key in x]
                return f"{statistics.median(vals):g}" if vals else "-"

            cmds = "1" if tool == FLOOR else med("commands")
            lines.append(f"| {n} | {tool} | {med('sshd_conn')} | {med('sudo')} | {cmds} |")
    lines += ["", "Remote commands: deploytool's round trips (its `--json` report; each carries several stages; "
              "plus one sftp upload); Capistrano's `Running` lines (plus one upload); Ansible's task results "
              "(PLAY RECAP `ok=`; a loop counts once); pyinfra's operations that ran commands (its fact reads not "
              "counted); the floor's one ssh command."]
    return lines


def report(res: Results, command: str) -> str:
    out = ["# deploytool benchmark", "",
           f"Command: `{command}`", f"Started: {res_started}",
           f"deploytool measured: {res.commits[0]}" + (f" (at the end: {res.commits[-1]}: CHANGED DURING THE RUN)"
                                                       if res.commits[-1] != res.commits[0] else ""),
           "Bench hosts: --light, one Sidekiq process per host (no RQ)" if light_run else "",
           f"deploytool's compared runs use `fab deploy {shlex.join(ALL_AT_ONCE)}` (every host's workers restarted "
           "at once, as the peers do)" if ALL_AT_ONCE else "",
           f"Machine: {os.cpu_count()} CPUs, {mem_gib():.1f} GiB RAM, kernel {platform.release()}, "
           f"{distro()}; load average at the start {load_at_start:.2f}; tools: {versions()}", ""]
    if res.startup:
        out += ["## Start-up: before the first connection (no host involved)", ""]
        out += startup_table(res)
        out += ["", "`fab --list` and `fab --version` wall time from start to exit; the import from "
                "`python -X importtime -c 'import deploytool.tasks'` (cumulative); the first connect of "
                "`fab deploy --host bench-01` (the bench inventory with bench-01 on a closed loopback port) "
                "from `strace -f --seccomp-bpf -e trace=connect`, counted from the process start.", ""]
    if res.runs:
        out += ["## Deploy: seconds per full deploy of N hosts (end state checked on every host after every run)", ""]
        out += summary_table(res.runs, res.sizes)
        out += ["", "## Growth with N (deploytool's compared runs, medians)", ""]
        out += growth_table(res)
    if res.restarts:
        out += ["", "## No-change worker restart, every host at once (every host checked after every run)", ""]
        out += restart_table(res)
    if any(r.ready is not None for r in [*res.runs, *res.restarts]):
        out += ["", "## Workers ready again: from the tool's start until every worker of every host registered "
                "anew with the broker (polled after the tool exited)", ""]
        out += ready_table(res)
        out += ["", "Polled every 0.1 s from the tool's exit, at most "
                f"{res.ready_timeout:.0f} s: Sidekiq's `processes` entries (tag, host, `started_at` after the "
                "start, not quiet), RQ's `rq:workers` (host, queues, `birth` after the start); see "
                "benchmarks/ready.py. The last column is the last expected worker's own registration time, "
                "which can fall before the tool exited."]
    if res.runs:
        out += ["", "## Per host per deploy (medians)", ""]
        out += counts_table(res)
    if res.restart:
        n = max(res.sizes)
        out += ["", f"## `fab workers.restart` at N = {n}", "",
                "| mode | seconds | sum of per-host drain times | sum of per-host stop-to-active spans | "
                "lower bound for the mode (sum over batches of the slowest drain) | median / max drain per host |",
                "|---|---:|---:|---:|---:|---:|"]
        for label, r in res.restart.items():
            out.append(f"| {label} | {fmt(r['seconds'])} | {fmt(r['sum_drain'])} | {fmt(r['sum_span'])} | "
                       f"{fmt(r['floor'])} ({r['batches']} batches) | {fmt(r['median_drain'])} / "
                       f"{fmt(r['max_drain'])} |")
        first = next(iter(res.restart.values()))
        out += ["", "Median stop (drain) time per unit: " + ", ".join(
            f"{u} {v:.2f}s" for u, v in first["per_unit_median"].items())]
    if res.stages:
        n = max(res.stages)
        out += ["", f"## Where deploytool's time goes at N = {n} (stage durations from `--json`, all runs)", ""]
        out += stage_table(res.stages[n])
    if res.profile:
        p = res.profile
        out += ["", f"## deploytool's controller CPU at N = {max(res.sizes)} (py-spy, one extra deploy: "
                f"{p['seconds']:.2f}s wall, {p['cpu']:.2f}s CPU, {p['samples']} on-CPU samples at {p['rate']} Hz)", "",
                "| function (file) | own samples | share |", "|---|---:|---:|"]
        out += [f"| `{f}` | {c} | {100 * c / p['samples']:.0f}% |" for f, c in p["own"]]
        out += ["", "| function (file), inclusive | samples | share |", "|---|---:|---:|"]
        out += [f"| `{f}` | {c} | {100 * c / p['samples']:.0f}% |" for f, c in p["incl"]]
    out += ["", "## Targets (issue 17)", "", *targets(res)]
    if res.failures:
        out += ["", "## Failures", "", *(f"- {f}" for f in res.failures)]
    return "\n".join(out) + "\n"


def median_of(runs: list[Run], tool: str, n: int) -> float | None:
    xs = [r.seconds for r in runs if r.tool == tool and r.n == n and r.ok]
    return statistics.median(xs) if xs else None


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def ratio_line(what: str, ours: float, theirs: float, whom: str, limit: float) -> str:
    """One target: ours <= limit x theirs; "not ready" (infinite) on our side never meets it."""
    def secs(x: float) -> str:
        return "not ready" if math.isinf(x) else f"{x:.2f}s"

    ratio = "-" if math.isinf(ours) or math.isinf(theirs) else f"{ours / theirs:.2f}"
    met = not math.isinf(ours) and ours <= limit * theirs
    return f"{what} {secs(ours)} vs {whom} {secs(theirs)}: ratio {ratio} (target <= {limit:g}): {verdict(met)}"


def targets(res: Results) -> list[str]:
    """Each target of issue 17, per N, with its ratio and whether it is met; then what is reported
    without a target."""
    lines = []
    for n in res.sizes if res.runs or res.restarts else []:
        d, floor = median_of(res.runs, "deploytool", n), median_of(res.runs, FLOOR, n)
        if d is not None and floor is not None:
            lines.append(f"- N = {n}: " + ratio_line("full deploy", d, floor, "the OpenSSH floor", 1.3))
        elif res.runs:
            lines.append(f"- N = {n}: full deploy vs the OpenSSH floor: no successful run of "
                         f"{'deploytool' if d is None else 'the floor'} to compare: NOT MET")
        ours, cap = (median_of(res.restarts, t, n) for t in RESTARTERS)
        if ours is not None and cap is not None:
            lines.append(f"- N = {n}: " + ratio_line("no-change `workers.restart --batch 100%`", ours, cap,
                                                     "Capistrano's `systemctl restart`", 1))
        elif res.restarts:
            lines.append(f"- N = {n}: no-change restart: no successful run of both to compare: NOT MET")
        for what, runs, (mine, peer) in (("deploy", res.runs, ("deploytool", "capistrano")),
                                         ("no-change restart", res.restarts, RESTARTERS)):
            o, c = (ready_median([r for r in runs if r.n == n and r.tool == t and r.ok]) for t in (mine, peer))
            if o is not None and c is not None:
                lines.append(f"- N = {n}: " + ratio_line(f"every worker ready again after a {what}", o, c,
                                                         "Capistrano", 1))
            elif runs:
                lines.append(f"- N = {n}: every worker ready again after a {what}: not measured for both: NOT MET")
    lines += ["", "Reported without a target:", ""]
    for n in res.sizes:
        rs = [r for r in res.runs if r.tool == "deploytool" and r.n == n and r.ok]
        if rs:
            cpu, tree = statistics.median(r.cpu for r in rs), statistics.median(r.tree for r in rs)
            lines.append(f"- N = {n}: deploytool's controller CPU {cpu:.2f}s ({1000 * cpu / n:.0f} ms per host), "
                         f"peak memory {tree:.0f} MiB ({tree / n:.2f} MiB per host) per deploy")
        conns = [x["sshd_conn"] for x in res.counts.get(f"{n}:deploytool", []) if not math.isnan(x["sshd_conn"])]
        cmds = [x["commands"] for x in res.counts.get(f"{n}:deploytool", []) if "commands" in x]
        if conns or cmds:
            lines.append(f"- N = {n}: per host per deploy, at most {max(conns, default=math.nan):g} SSH "
                         f"connection(s) (sshd's log) and {max(cmds, default=math.nan):g} round trip(s) "
                         "(deploytool's report)")
    now = res.startup.get("now", {})
    for label, before in res.startup.items():
        if label == "now":
            continue
        for key in ("fab --list s", "one-host deploy: start to first connect s"):
            if key in now and key in before:
                lines.append(f"- start-up, {key.removesuffix(' s')}: {now[key]:.3f}s now vs {before[key]:.3f}s "
                             f"{label}: ratio {now[key] / before[key]:.2f}")
    return lines


def growth_table(res: Results) -> list[str]:
    """How deploytool's deploy time, controller CPU and controller memory grow with N (medians of the
    compared runs); memory per host is the tree's peak over N, and what each host added since the
    previous N."""
    lines = ["| N | deploytool s | vs smallest N | controller CPU s | CPU ms per host | "
             "peak memory MiB (process tree) | MiB per host | MiB added per added host | "
             "largest process peak RSS MiB | OpenSSH floor s | floor's CPU s | floor's peak memory MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = None
    prev: tuple[int, float] | None = None
    for n in res.sizes:
        rs = [r for r in res.runs if r.tool == "deploytool" and r.n == n and r.ok]
        if not rs:
            continue
        sec = statistics.median(r.seconds for r in rs)
        cpu = statistics.median(r.cpu for r in rs)
        base = base or sec
        fl = [r for r in res.runs if r.tool == FLOOR and r.n == n and r.ok]
        fs = fmt(statistics.median(r.seconds for r in fl)) if fl else "-"
        fc = fmt(statistics.median(r.cpu for r in fl)) if fl else "-"
        fm = f"{statistics.median(r.tree for r in fl):.0f}" if fl else "-"
        tree = statistics.median(r.tree for r in rs)
        added = f"{(tree - prev[1]) / (n - prev[0]):.2f}" if prev else "-"
        prev = (n, tree)
        lines.append(f"| {n} | {fmt(sec)} | {sec / base:.2f}x | {fmt(cpu)} | {1000 * cpu / n:.0f} | {tree:.0f} | "
                     f"{tree / n:.2f} | {added} | {statistics.median(r.rss for r in rs):.0f} | {fs} | {fc} | {fm} |")
    return lines


def ready_median(runs: list[Run]) -> float | None:
    """Median time until every worker was ready, a run whose workers never were counting as infinite
    (so a median that is infinite reads "not ready"); None without any run that was asked."""
    xs = [r.ready.seconds if r.ready.seconds is not None else math.inf for r in runs if r.ready is not None]
    return statistics.median(xs) if xs else None


def fmt_ready(x: float | None) -> str:
    return "-" if x is None else "not ready" if math.isinf(x) else fmt(x)


def ready_table(res: Results) -> list[str]:
    lines = ["| N | after | tool | tool exited s (median) | all workers ready s (median) | min | max | "
             "ready / runs | last worker registered s (its own stamp, median) |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for n in res.sizes:
        for what, runs, tools in (("deploy", res.runs, (*TOOLS, ROLLING)),
                                  ("no-change restart", res.restarts, RESTARTERS)):
            for tool in tools:
                rs = [r for r in runs if r.n == n and r.tool == tool and r.ok and r.ready is not None]
                if not rs:
                    continue
                ready = [r.ready.seconds for r in rs if r.ready is not None and r.ready.seconds is not None]
                stamps = [r.ready.last_registered for r in rs
                          if r.ready is not None and r.ready.last_registered is not None]
                lines.append(
                    f"| {n} | {what} | {tool} | {fmt(statistics.median(r.seconds for r in rs))} | "
                    f"{fmt_ready(ready_median(rs))} | {fmt(min(ready)) if ready else '-'} | "
                    f"{fmt(max(ready)) if ready else '-'} | {len(ready)} / {len(rs)} | "
                    f"{fmt(statistics.median(stamps)) if stamps else '-'} |")
    return lines


def restart_table(res: Results) -> list[str]:
    lines = ["| N | command | median s | min s | max s | runs | controller CPU s (median) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for n in res.sizes:
        for tool in RESTARTERS:
            rs = [r for r in res.restarts if r.n == n and r.tool == tool and r.ok]
            if rs:
                xs = [r.seconds for r in rs]
                lines.append(f"| {n} | {tool} | {fmt(statistics.median(xs))} | {fmt(min(xs))} | {fmt(max(xs))} | "
                             f"{len(xs)} | {fmt(statistics.median(r.cpu for r in rs))} |")
    return lines


def deploytool_version() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "deploytool", "templates"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return head + (" with uncommitted changes in deploytool/" if dirty else "")


def mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def distro() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "?"


def versions() -> str:
    def first(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, check=False)
            return (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, IndexError):
            return "?"

    fabric = first([str(ROOT / ".venv" / "bin" / "python"), "-c", "import fabric; print(fabric.__version__)"])
    return (f"deploytool {first(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'])} (Fabric {fabric}), "
            f"{first([CAP, '--version'])}, {first([str(ANSIBLE_PLAYBOOK), '--version'])}, "
            f"{first([str(PYINFRA), '--version'])}, {first(['ssh', '-V'])}")


res_started = ""
load_at_start = 0.0  # read when the run starts: by the report, the run itself has loaded the machine
light_run = False


def main() -> int:
    global res_started, light_run, load_at_start, PEERS, TOOLS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,8,32",
                    help=f"fleet sizes, comma-separated (default 1,8,32; max {MAX_HOSTS})")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool per size (default 3)")
    ap.add_argument("--no-restart", action="store_true", help="skip the workers.restart timings")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of one deploy")
    ap.add_argument("--startup-baseline", metavar="REV",
                    help="also measure the start-up of deploytool at this git revision, interleaved (before/after)")
    ap.add_argument("--light", action="store_true",
                    help=f"bench hosts run only the {', '.join(LIGHT_GROUPS)} worker group (one process): for N > 32")
    ap.add_argument("--startup-only", action="store_true", help="only the start-up measures: no host, no lock")
    ap.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT, metavar="S",
                    help=f"seconds after a tool exits that its workers may take to register anew (default "
                         f"{READY_TIMEOUT:g}); longer counts as not ready")
    ap.add_argument("--without", default="", metavar="TOOL,...",
                    help=f"peers not to run, comma-separated, of {', '.join(PEERS)} (e.g. ansible at N = 64, where "
                         "one of its runs takes minutes); the floor and deploytool always run")
    args = ap.parse_args()
    light_run = args.light
    without = {x.strip() for x in args.without.split(",") if x.strip()}
    if without - set(PEERS):
        ap.error(f"--without: not a peer: {', '.join(sorted(without - set(PEERS)))}")
    PEERS = tuple(p for p in PEERS if p not in without)
    TOOLS = ("deploytool", *PEERS, FLOOR)
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_HOSTS or args.repeat < 1:
        ap.error(f"sizes must be between 1 and {MAX_HOSTS}, repeat at least 1")
    command = "benchmarks/run " + shlex.join(sys.argv[1:])
    res = Results(sizes, args.repeat, ready_timeout=args.ready_timeout)
    OUT.mkdir(parents=True, exist_ok=True)
    # Start-up first, outside the lock: it needs no host (its one connect goes to a closed loopback port).
    res_started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_at_start = os.getloadavg()[0]
    res.commits.append(deploytool_version())
    measure_startup(res, args.repeat, args.startup_baseline)
    if args.startup_only:
        res.commits.append(deploytool_version())
        text = report(res, command)
        (OUT / "report.md").write_text(text)
        print(text)
        return 0

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    booted: list[str] = []
    log(f"waiting for the sandbox session lock {SESSION_LOCK} (held while the test suite runs)")
    with held(SESSION_LOCK):
        log("got the lock")
        ours = [REDIS_HOST[0], *host_names(MAX_HOSTS)]
        leftover = [h.name for h in sandbox.recorded_hosts() if h.name in ours]
        if leftover:
            log(f"removing bench hosts left by an earlier run: {', '.join(leftover)}")
            sandbox.down(names=ours)
        try:
            for i, n in enumerate(sizes):
                names = host_names(n)
                setup = prepare(names, args.light)
                new = [h for h in names if h not in booted]
                boot(names, booted)
                provision(setup, new)
                # Untimed first deploy of new hosts: units installed, so every timed run does the same work.
                first = timed("deploytool", n, [str(FAB), "-r", str(ROOT), "deploy", "--inventory",
                                                str(setup.inventory), "--host", ",".join(new), *ALL_AT_ONCE], ROOT,
                              logname=f"n{n}-first-deploy")
                if not first.ok:
                    raise SystemExit(f"first deploy failed:\n{first.output[-3000:]}")
                log(f"N={n}: first deploy of {len(new)} new host(s) {first.seconds:.1f}s")
                measure_size(setup, res, first=(i == 0))
                if not args.no_restart:
                    measure_restart_compare(setup, res)
                if n == sizes[-1] and not args.no_restart:
                    measure_restart(setup, res)
                if n == sizes[-1] and not args.no_profile:
                    measure_profile(setup, res)
        finally:
            if booted:
                log(f"removing the {len(booted)} bench host(s)")
                sandbox.down(names=booted)
    res.commits.append(deploytool_version())
    text = report(res, command)
    (OUT / "report.md").write_text(text)
    print(text)
    log(f"written {OUT / 'report.md'}; logs in {OUT / 'logs'}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
