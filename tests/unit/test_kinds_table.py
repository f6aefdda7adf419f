"""The worker-kinds table: the systemd facts each kind must respect (see docs/anchors.md)."""

from __future__ import annotations

import string

import pytest

from deploytool.kinds import KINDS, Kind, Queue, Quiet

ALL = sorted(KINDS)
MULTI_PROCESS = ["celery", "rq", "dramatiq", "sneakers"]


def test_the_six_kinds() -> None:
    assert ALL == ["celery", "command", "dramatiq", "rq", "sidekiq", "sneakers"]
    assert all(name == kind.name for name, kind in KINDS.items())


@pytest.mark.parametrize("name", ALL)
def test_systemd_waits_longer_than_the_worker(name: str) -> None:
    kind = KINDS[name]
    assert kind.stop_margin > 0
    assert kind.timeout_stop_sec(kind.default_timeout) > kind.default_timeout


@pytest.mark.parametrize("name", MULTI_PROCESS)
def test_multi_process_kinds_signal_only_the_main_process(name: str) -> None:
    assert KINDS[name].kill_mode == "mixed"


@pytest.mark.parametrize("name", ALL)
def test_unit_settings_are_valid_systemd_values(name: str) -> None:
    kind = KINDS[name]
    assert kind.unit_type in ("exec", "notify", "simple")
    assert kind.kill_mode in ("control-group", "mixed", "process")
    assert kind.stop_signal.startswith("SIG")
    # WatchdogSec only means something when the worker talks sd_notify.
    assert (kind.watchdog_sec is not None) == (kind.unit_type == "notify")


def test_sidekiq_is_supervised_by_notify_and_quieted_by_tstp() -> None:
    sidekiq = KINDS["sidekiq"]
    assert (sidekiq.unit_type, sidekiq.watchdog_sec) == ("notify", 10)
    assert (sidekiq.quiet, sidekiq.quiet_signal) == (Quiet.SIGNAL, "SIGTSTP")


@pytest.mark.parametrize("name", ALL)
def test_quiet_is_never_faked(name: str) -> None:
    kind = KINDS[name]
    assert (kind.quiet is Quiet.SIGNAL) == (kind.quiet_signal is not None)
    if name in ("rq", "dramatiq", "sneakers", "command"):
        assert kind.quiet is Quiet.NONE


@pytest.mark.parametrize("name", ALL)
def test_instance_args_use_known_placeholders(name: str) -> None:
    for arg in KINDS[name].instance_args:
        fields = {f for _, f, _, _ in string.Formatter().parse(arg) if f is not None}
        assert fields <= {"app", "group", "host", "instance"}, arg


def test_celery_node_names_are_unique_per_instance_and_host() -> None:
    # Celery's quiet addresses a node by name; two instances must never share one.
    [arg] = [a for a in KINDS["celery"].instance_args if "{" in a]
    assert "{instance}" in arg and "{host}" in arg


def test_rq_workers_get_rq_generated_names() -> None:
    # A fixed name is refused by RQ while a dead worker's registration lingers: systemd restarts fail.
    assert "--name" not in KINDS["rq"].instance_args


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("sidekiq", ["-q", "critical,2", "-q", "default"]),
        ("celery", ["-Q", "critical,default"]),
        ("rq", ["critical", "default"]),
        ("dramatiq", ["-Q", "critical", "default"]),
        ("sneakers", []),
        ("command", []),
    ],
)
def test_queue_flags(name: str, flags: list[str]) -> None:
    kind: Kind = KINDS[name]
    queues = [Queue("critical", 2 if kind.supports_weights else None), Queue("default")]
    assert kind.queue_flags(queues) == flags
    assert kind.queue_flags([]) == []


def test_kinds_without_a_usable_default_program_require_a_command() -> None:
    assert KINDS["command"].program == ()
    assert KINDS["command"].requires_command
    for kind in KINDS.values():
        assert kind.requires_command or kind.program
