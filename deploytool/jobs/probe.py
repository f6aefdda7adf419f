"""The command that runs a system's probe on a host, and the probe's JSON turned into a Reading.

A probe runs in the app's release, with the interpreter of the worker's own program (the shebang of
`sidekiq` or `rq`: the Ruby or Python, and the libraries, the workers use) and the workers' environment
(the inventory's, then the env file, which wins as it does in the units). It is sent on stdin, so
nothing is installed on the host, and prints one JSON line."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from deploytool import units
from deploytool.commands import running
from deploytool.inventory import NAMESPACE_ENV, App, WorkerGroup
from deploytool.jobs.model import QueueCounts, Reading, SeenWorker
from deploytool.jobs.systems import SYSTEMS, System
from deploytool.kinds import KINDS
from deploytool.remote import Expand, join

q = shlex.quote
END = "DEPLOYTOOL_PROBE_END"


def environment(app: App, group: WorkerGroup) -> dict[str, str]:
    """The worker's environment as the inventory gives it (the env file is read on the host)."""
    env = {**app.variables, **group.variables}
    if app.redis:
        env.setdefault("REDIS_URL", app.redis[0])
    if app.redis_namespace is not None:
        env.setdefault(NAMESPACE_ENV, app.redis_namespace)
    return env


def queue_names(group: WorkerGroup) -> list[str]:
    return [x.name for x in group.queues] or [KINDS[group.kind].default_queue]


def launcher(system: System, program: str, host: str) -> str:
    """sh text, run in the workers' context, that finds the interpreter of the worker's program (its
    shebang, which may be `/usr/bin/env ruby`: left unquoted, so it splits into its words) and runs the
    probe read from stdin with it; "$@" are the probe's arguments. DEPLOYTOOL_HOST: the inventory's
    name of the host, which Celery node names carry."""
    missing = f"cannot find the interpreter of {program} (for the {system.name} probe)"
    language = system.language.rstrip("0123456789")
    return "\n".join([
        f'py=$(sed -n "1s/^#! *//p" "$(command -v {q(program)})" 2>/dev/null)',
        f'case "$py" in *{language}*) ;; *) py={q(system.language)} ;; esac',
        f"command -v ${{py%% *}} >/dev/null || {{ echo {q(missing)} >&2; exit 1; }}",
        f'DEPLOYTOOL_HOST={q(host)} exec $py - "$@"',
    ])


def context(app: App, group: WorkerGroup) -> str:
    """Shell text giving the probe the workers' context: as working directory the release the group's
    running workers work in (deploytool.commands.running: their code, not whatever `current` says),
    `current` when none runs (before a first deploy, when the check before a deploy runs too, there
    is none: the home directory), the inventory's environment, then the env file, which wins as it
    does in the units.

    Unlike deploytool.context it does not need the environment files deploytool writes: the check before
    a first deploy runs before they exist. It runs as the SSH user, with the units' PATH."""
    lines = [running.release_of(app, group),
             f'cd "${running.VAR}" 2>/dev/null || cd {q(app.current_path)} 2>/dev/null || cd']
    # The units' PATH, never the login shell's (whose shims may name another interpreter).
    lines.append(f"export PATH={q(units.search_path(app, group) or units.DEFAULT_PATH)}")
    lines += [f"export {k}={q(v)}" for k, v in environment(app, group).items()]
    if app.env_file_path:
        env_file = q(app.env_file_path)
        lines.append(f"if [ -f {env_file} ]; then set -a && . {env_file} && set +a || exit 1; fi")
    return "\n".join(lines)


def command(app: App, group: WorkerGroup, system: System, queues: Sequence[str], host: str = "") -> str:
    """Shell text running the probe for `queues` with the group's interpreter and environment; the
    probe's source goes on stdin."""
    argv = list(group.command or KINDS[group.kind].program)
    args = [*system.probe_args(argv), *queues]
    run = join(["sh", "-c", launcher(system, argv[0], host), "sh", *args])
    return f"{context(app, group)}\n{run} <<'{END}'\n{system.source()}\n{END}"


def ready_command(app: App, group: WorkerGroup, mode: str, state: str, spec: Mapping[str, Any],
                  host: str = "") -> str:
    """Shell text running the group's readiness probe (System.ready_probe) in `mode` (mark, check), in
    the workers' context; `state` is what `mark` printed (shell text expanded on the host: `$var`),
    `spec` what the group's units should show."""
    system = SYSTEMS[group.kind]
    argv = list(group.command or KINDS[group.kind].program)
    args = [*system.probe_args(argv), mode, Expand(state), json.dumps(spec, sort_keys=True)]
    run = join(["sh", "-c", launcher(system, argv[0], host), "sh", *args])
    return f"{context(app, group)}\n{run} <<'{END}'\n{system.source(system.ready_probe)}\n{END}"


class ProbeOutputError(ValueError):
    pass


def parse(host: str, stdout: str) -> Reading:
    """The probe's last output line (earlier ones may be a library's warnings) as a Reading."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        data = json.loads(lines[-1])
        return reading(host, data)
    except (IndexError, ValueError, KeyError, TypeError) as e:
        shown = lines[-1][:200] if lines else "(no output)"
        raise ProbeOutputError(f"unreadable probe output ({type(e).__name__}): {shown}") from None


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _opt(data: Mapping[str, Any], key: str) -> int | None:
    return int(data[key]) if data.get(key) is not None else None


def reading(host: str, data: Mapping[str, Any]) -> Reading:
    queues = tuple(
        QueueCounts(name=str(x["name"]), queued=_int(x["queued"]),
                    latency=float(x["latency"]) if x.get("latency") is not None else None,
                    running=_opt(x, "running"), scheduled=_opt(x, "scheduled"), retrying=_opt(x, "retrying"),
                    dead=_opt(x, "dead"), deferred=_opt(x, "deferred"), reserved=_opt(x, "reserved"),
                    consumers=_opt(x, "consumers"), failed_recently=_opt(x, "failed_recently"))
        for x in data["queues"]
    )
    workers = tuple(
        SeenWorker(name=str(w["name"]), hostname=str(w.get("hostname") or ""),
                   pid=_opt(w, "pid"), tag=str(w.get("tag") or ""),
                   queues=tuple(str(n) for n in w.get("queues") or ()), concurrency=_int(w.get("concurrency")),
                   busy=_int(w.get("busy")), quiet=bool(w.get("quiet")), unit=w.get("unit") or None)
        for w in data.get("workers") or ()
    )
    others = tuple((str(x["name"]), _int(x.get("queued"))) for x in data.get("other_queues", ()))
    return Reading(system=str(data["system"]), host=host, hostname=str(data.get("hostname") or ""),
                   queues=queues, other_queues=others, workers=workers,
                   workers_known=data.get("workers", ()) is not None)
