"""The [Service] settings an inventory may set through a worker group's `systemd:` mapping.

An allow list, not a pass-through: each setting has the form its value must take, so a typo or a value
systemd would ignore with a warning (leaving the worker less confined or unlimited) is refused at
`inventory.check` instead. Settings that would change how deploytool starts, stops or finds a worker
(ExecStart=, Type=, KillMode=, User=, Environment=...) are not here: they have inventory keys of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    pattern: str  # the whole value must match (re.fullmatch)
    form: str  # what the error message says the value must be
    # systemd expands specifiers (%h, %i...) in this setting: a literal `%` must be written `%%`.
    specifiers: bool = False

    def check(self, value: str) -> str | None:
        """None if `value` is acceptable, else what it must be."""
        return None if re.fullmatch(self.pattern, value) else self.form


_BOOL = Setting(r"yes|no|true|false|on|off|1|0", "yes or no")
_SIZE = Setting(r"\d+(\.\d+)?[KMGT]?|\d{1,3}(\.\d+)?%|infinity",
                "bytes with an optional K, M, G or T suffix, a percentage, or infinity")
_PERCENT = Setting(r"\d{1,5}%", "a percentage, e.g. 150%")
_WEIGHT = Setting(r"[1-9]\d{0,3}|10000|idle", "a number from 1 to 10000")
_COUNT = Setting(r"\d{1,9}(:\d{1,9})?|infinity", "a number, SOFT:HARD, or infinity")
_TIMESPAN = Setting(r"(\d+(\.\d+)?(us|ms|s|sec|m|min|h|d)?\s*)+|infinity", "a time span, e.g. 5s or 1min 30s")
_PATHS = Setting(r"([-+]?/[^\s%\"'\\]*)(\s+[-+]?/[^\s%\"'\\]*)*|", "absolute paths separated by spaces",
                 specifiers=True)
_WORDS = Setting(r"~?[A-Za-z0-9_@:.-]+(\s+[A-Za-z0-9_@:.-]+)*|", "names separated by spaces")
_ADDRESSES = Setting(r"[A-Za-z0-9.:/-]+(\s+[A-Za-z0-9.:/-]+)*|", "addresses or prefixes separated by spaces")

SERVICE_SETTINGS: dict[str, Setting] = {
    # Resources (the puppet class's limits, and more).
    "MemoryMax": _SIZE,
    "MemoryHigh": _SIZE,
    "MemorySwapMax": _SIZE,
    "CPUQuota": _PERCENT,
    "CPUWeight": _WEIGHT,
    "IOWeight": _WEIGHT,
    "TasksMax": _COUNT,
    "Nice": Setting(r"-?([0-9]|1[0-9])|-20", "a whole number from -20 to 19"),
    "OOMScoreAdjust": Setting(r"-?(\d{1,3}|1000)", "a whole number from -1000 to 1000"),
    "LimitNOFILE": _COUNT,
    "LimitNPROC": _COUNT,
    "LimitCORE": _COUNT,
    "LimitMEMLOCK": _COUNT,
    "UMask": Setting(r"0?[0-7]{3}", "an octal mode, e.g. 0027"),
    "SupplementaryGroups": _WORDS,
    # Restarting (RestartSteps= and RestartMaxDelaySec= need systemd 254 or later on the host).
    "Restart": Setting(r"no|always|on-success|on-failure|on-abnormal|on-abort|on-watchdog", "a Restart= policy"),
    "RestartSec": _TIMESPAN,
    "RestartSteps": Setting(r"\d{1,4}", "a number of steps"),
    "RestartMaxDelaySec": _TIMESPAN,
    "TimeoutStartSec": _TIMESPAN,
    "WatchdogSec": _TIMESPAN,
    # Sandboxing: each default of units.SANDBOXING can be changed or turned off here.
    "NoNewPrivileges": _BOOL,
    "PrivateTmp": _BOOL,
    "PrivateDevices": _BOOL,
    "PrivateMounts": _BOOL,
    "PrivateUsers": _BOOL,
    "PrivateNetwork": _BOOL,
    "ProtectSystem": Setting(r"yes|no|true|false|full|strict", "yes, no, full or strict"),
    "ProtectHome": Setting(r"yes|no|true|false|read-only|tmpfs", "yes, no, read-only or tmpfs"),
    "ProtectKernelTunables": _BOOL,
    "ProtectKernelModules": _BOOL,
    "ProtectKernelLogs": _BOOL,
    "ProtectControlGroups": _BOOL,
    "ProtectClock": _BOOL,
    "ProtectHostname": _BOOL,
    "ProtectProc": Setting(r"noaccess|invisible|ptraceable|default", "noaccess, invisible, ptraceable or default"),
    "ProcSubset": Setting(r"all|pid", "all or pid"),
    "RestrictSUIDSGID": _BOOL,
    "RestrictRealtime": _BOOL,
    "RestrictNamespaces": Setting(r"yes|no|true|false|~?[a-z]+(\s+[a-z]+)*", "yes, no, or namespace types"),
    "RestrictAddressFamilies": Setting(r"none|~?AF_[A-Z0-9]+(\s+AF_[A-Z0-9]+)*|", "AF_ names separated by spaces"),
    "LockPersonality": _BOOL,
    "MemoryDenyWriteExecute": _BOOL,
    "RemoveIPC": _BOOL,
    "SystemCallFilter": _WORDS,
    "SystemCallArchitectures": _WORDS,
    "SystemCallErrorNumber": Setting(r"[A-Z][A-Z0-9]+|kill", "an errno name, e.g. EPERM"),
    "CapabilityBoundingSet": _WORDS,
    "AmbientCapabilities": _WORDS,
    "ReadWritePaths": _PATHS,
    "ReadOnlyPaths": _PATHS,
    "InaccessiblePaths": _PATHS,
    "IPAddressAllow": _ADDRESSES,
    "IPAddressDeny": _ADDRESSES,
}


def check(key: str, value: str) -> str | None:
    """None if `key=value` may be set through `systemd:`, else a one-line reason."""
    setting = SERVICE_SETTINGS.get(key)
    if setting is None:
        return f"{key}: not a [Service] setting deploytool allows here (see docs/migrating.md)"
    problem = setting.check(value)
    return None if problem is None else f"{key}: must be {problem} (got {value!r})"
