"""Tests that need a program of the machine (systemd's parser, redis-server, Ruby with Sidekiq) skip
where it is missing (a laptop), never in CI: there scripts/bootstrap installs it, and a test that
silently skips would prove nothing."""

from __future__ import annotations

import os

import pytest


def required_in_ci(present: bool, what: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not present and not os.environ.get("CI"), reason=f"needs {what}")
