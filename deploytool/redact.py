"""Secrets out of everything printed: the inventory's `environment:` values in every form they take on
the way to a host (shell-quoted, JSON-escaped, systemd-escaped), and the password of any URL
(`redis://:pw@host`, `amqp://user:pw@host`)."""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploytool.inventory import Inventory

MASK = "***"
# Shorter values would redact ordinary words; they are not secrets worth the noise.
MIN_LENGTH = 4

# scheme://[user]:password@  — the password is everything up to the last @ before the host.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)([^\s/'\"]+)@")

_known: set[str] = set()
_known_lock = threading.Lock()


def forms(secret: str) -> set[str]:
    """The texts a value becomes on its way to a host or into a report."""
    quoted = shlex.quote(secret)
    c_escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
    out = {secret, quoted, c_escaped, json.dumps(secret)[1:-1], json.dumps(quoted)[1:-1],
           c_escaped.replace("%", "%%").replace("$", "$$")}
    return {f for f in out if len(f) >= MIN_LENGTH}


def remember(secrets: Iterable[str]) -> None:
    """Secrets of an inventory this process loaded: redacted from every message, also at the edge."""
    with _known_lock:
        _known.update(s for s in secrets if len(s) >= MIN_LENGTH)


def inventory_secrets(inv: Inventory) -> list[str]:
    """Environment values never printed: the inventory's, for every app and group."""
    values: list[str] = []
    for apps in inv.resolved.values():
        for app in apps.values():
            values += app.environment.values()
            for g in app.workers.values():
                values += g.environment.values()
    return values


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    with _known_lock:
        values = set(_known)
    values.update(s for s in secrets if len(s) >= MIN_LENGTH)
    variants = sorted({f for s in values for f in forms(s)}, key=len, reverse=True)
    for v in variants:
        text = text.replace(v, MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
