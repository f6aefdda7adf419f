"""Quiet commands that are not a signal: Celery's remote control (run in the group's context, see
deploytool.context)."""

from __future__ import annotations

from collections.abc import Sequence


def celery_cancel_consumer(program: Sequence[str], queue: str, node: str) -> list[str]:
    """Stop one worker node consuming from one queue; it finishes the tasks it already has."""
    return [*program, "control", "cancel_consumer", queue, "-d", node]


def until_replied(command: str, attempts: int = 10) -> str:
    """Run command until it succeeds, at most `attempts` times a second apart; fail if it never does.

    A Celery node whose unit just started is not listening yet: a control message sent then is lost
    (no node replies, exit 69), and the node would come up consuming. So a quiet tries again."""
    return (f"for attempt in $(seq {attempts}); do if {command}; then break; fi; "
            f'if [ "$attempt" -eq {attempts} ]; then false; else sleep 1; fi; done')
