"""Quiet commands that are not a signal: Celery's remote control (run in the group's context, see
deploytool.context)."""

from __future__ import annotations

from collections.abc import Sequence


def celery_cancel_consumer(program: Sequence[str], queue: str, node: str) -> list[str]:
    """Stop one worker node consuming from one queue; it finishes the tasks it already has."""
    return [*program, "control", "cancel_consumer", queue, "-d", node]
