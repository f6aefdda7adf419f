"""Quiet commands that are not a signal: Celery's remote control, run from the release."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from deploytool.commands.release import with_app_env
from deploytool.inventory import App


def celery_cancel_consumer(program: Sequence[str], queue: str, node: str) -> list[str]:
    """Stop one worker node consuming from one queue; it finishes the tasks it already has."""
    return [*program, "control", "cancel_consumer", queue, "-d", node]


def in_release(app: App, argv: Sequence[str], env: Mapping[str, str]) -> str:
    # The app's own code (its Celery app module) is importable only from the release, and its broker
    # URL is in the environment the units get (the env file, the inventory's environment). A subshell:
    # nothing leaks into the commands after it.
    return f"( cd {shlex.quote(app.current_path)} && {with_app_env(app, shlex.join(argv), env)} )"


def until_replied(command: str, attempts: int = 10) -> str:
    """Run command until it succeeds, at most `attempts` times a second apart; fail if it never does.

    A Celery node whose unit just started is not listening yet: a control message sent then is lost
    (no node replies, exit 69), and the node would come up consuming. So a quiet tries again."""
    return (f"for attempt in $(seq {attempts}); do if {command}; then break; fi; "
            f'if [ "$attempt" -eq {attempts} ]; then false; else sleep 1; fi; done')


def if_active(guard: Sequence[str], command: str) -> str:
    """Run command only while the worker's unit is active: a stopped node fetches nothing (already
    quiet), and Celery's remote control fails (exit 69) when no node replies, e.g. before a first start."""
    return f"if {shlex.join(guard)}; then {command}; fi"
