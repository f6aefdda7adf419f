"""Secrets out of everything printed, as whole values, in every form they take on the way to a host or
into a report (shell-quoted, JSON-escaped, systemd-escaped). What is secret: the values under the
inventory's `secrets:` (app and group), values whose variable name says so (`*PASSWORD*`, `*SECRET*`,
`*TOKEN*`, `*_KEY`, ... in `environment:`: an older inventory's secrets), and the password of any URL
(`redis://:pw@host`, `amqp://user:pw@host`), wherever it appears. Everything else in `environment:`
(`APP_ENV: production`) is ordinary and printed as it is (docs/security.md)."""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote

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
    # An environment file's double-quoted form (deploytool.systemd_quote.env_file).
    env_escaped = "".join("\\" + c if c in '\\"$`' else c for c in secret)
    out = {secret, quoted, c_escaped, env_escaped, json.dumps(secret)[1:-1], json.dumps(quoted)[1:-1],
           c_escaped.replace("%", "%%").replace("$", "$$")}
    return {f for f in out if len(f) >= MIN_LENGTH}


def remember(secrets: Iterable[str]) -> None:
    """Secrets of an inventory this process loaded: redacted from every message, also at the edge."""
    with _known_lock:
        _known.update(s for s in secrets if len(s) >= MIN_LENGTH)


# Variable names that say their value is secret (case-insensitive), for `environment:` values of
# inventories written before `secrets:` existed.
SECRET_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|(^|_)KEY$)")


def url_passwords(value: str) -> list[str]:
    """The passwords of the URLs in `value`, as written and percent-decoded."""
    found = []
    for m in _URL_PASSWORD.finditer(value):
        found += [m.group(2), unquote(m.group(2))]
    return found


def secret_values(environment: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """What one level of the inventory (an app or a group) holds that is secret."""
    values = list(secrets.values())
    values += [v for name, v in environment.items() if SECRET_NAME.search(name)]
    for v in [*environment.values(), *secrets.values()]:
        values += url_passwords(v)
    return values


def inventory_secrets(inv: Inventory) -> list[str]:
    """Every value of the inventory that is never printed: for every app and group, its `secrets:`,
    its `environment:` values with a secret name, and every URL password (the apps' Redis URLs too)."""
    values: list[str] = []
    for apps in inv.resolved.values():
        for app in apps.values():
            values += secret_values(app.environment, app.secrets)
            for url in app.redis:
                values += url_passwords(url)
            for g in app.workers.values():
                values += secret_values(g.environment, g.secrets)
    return values


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    with _known_lock:
        values = set(_known)
    values.update(s for s in secrets if len(s) >= MIN_LENGTH)
    variants = sorted({f for s in values for f in forms(s)}, key=len, reverse=True)
    for v in variants:
        text = text.replace(v, MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
