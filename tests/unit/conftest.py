"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploytool.engine.rolling import CANCELLED


@pytest.fixture
def not_cancelled() -> Iterator[None]:
    """Another test's interruption (deploytool.engine.rolling.CANCELLED) must not leak into this one's executor."""
    CANCELLED.clear()
    yield
    CANCELLED.clear()
