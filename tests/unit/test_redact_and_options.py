"""Redaction of secrets in every form they take, and task options checked like the inventory."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from deploytool.errors import InputError
from deploytool.redact import redact
from deploytool.tasks.options import check_options

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pa ss'w\"o$rd%x"


@pytest.mark.parametrize(
    "text",
    [
        f"export TOKEN={SECRET}",
        f"export TOKEN={shlex.quote(SECRET)}",
        json.dumps({"error": f"failed: export TOKEN={shlex.quote(SECRET)}"}),
        json.dumps({"env": SECRET}),
        'Environment="TOKEN='
        + SECRET.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"',
    ],
)
def test_secret_is_redacted_in_every_form(text: str) -> None:
    out = redact(text, [SECRET])
    assert "***" in out
    for fragment in ("ss'w", 'w\\"o', "w\"o$rd"):
        assert fragment not in out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter22@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("amqp://shop:hunter22@mq.local/vhost", "amqp://shop:***@mq.local/vhost"),
        ("REDIS_URL=rediss://default:p%40ss@h:6380/1 x", "REDIS_URL=rediss://default:***@h:6380/1 x"),
        ("redis://10.0.0.1:6379/0", "redis://10.0.0.1:6379/0"),  # no password: unchanged
    ],
)
def test_url_passwords_are_redacted(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_short_values_are_left_alone() -> None:
    assert redact("on and off", ["on"]) == "on and off"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lines": "abc"}, "--lines abc: expected a whole number >= 1"),
        ({"lines": "0"}, "--lines 0: expected a whole number >= 1"),
        ({"max_fail": "-1"}, "--max-fail -1: expected a whole number >= 0"),
        ({"parallel": "-3"}, "--parallel -3: expected a whole number >= 0"),
        ({"timeout": "0"}, "--timeout 0: expected a number > 0"),
        ({"timeout": "soon"}, "--timeout soon: expected a number > 0"),
        ({"timeout": "nan"}, "--timeout nan: expected a number > 0"),
        ({"timeout": "inf"}, "--timeout inf: expected a number > 0 and <= 86400"),
        ({"batch": "0"}, "--batch batch 0"),
        ({"restart_batch": "150%"}, "--restart-batch batch 150%"),
    ],
)
def test_bad_option_is_input_error(options: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("%", "%")):
        check_options(options)


def test_good_options_are_converted() -> None:
    assert check_options({"lines": "20", "max_fail": "0", "timeout": "2.5", "batch": "25%", "host": "a"}) == {
        "lines": 20, "max_fail": 0, "timeout": 2.5, "batch": "25%", "host": "a"}


@pytest.mark.parametrize(
    "argv",
    [["workers.logs", "--lines", "abc"], ["deploy", "--max-fail", "-1"], ["deploy", "--parallel", "-3"],
     ["deploy", "--batch", "0"], ["deploy", "--timeout", "x"], ["workers.restart", "--timeout", "-1"]],
)
def test_fab_exits_2_with_one_line(argv: list[str]) -> None:
    # Checked before the inventory is used: no host is contacted (the sandbox is not even running).
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "fab"), "-r", str(ROOT), *argv], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: --") and "Traceback" not in r.stderr
