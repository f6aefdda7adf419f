"""Quiet commands that are not a signal: Celery's remote control, run from the release."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from deploytool.inventory import App


def celery_cancel_consumer(program: Sequence[str], queue: str, node: str) -> list[str]:
    """Stop one worker node consuming from one queue; it finishes the tasks it already has."""
    return [*program, "control", "cancel_consumer", queue, "-d", node]


def in_release(app: App, argv: Sequence[str]) -> str:
    # The app's own code (its Celery app module) is importable only from the release.
    return f"cd {shlex.quote(app.current_path)} && {shlex.join(argv)}"
