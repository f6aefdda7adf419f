"""Which hosts and apps a task works on, from --host, --role and --app (pure: no hosts contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploytool.errors import InputError
from deploytool.inventory import Inventory, load_inventory
from deploytool.tasks.options import select_hosts, select_targets, split_names

PRODUCTION = Path(__file__).resolve().parents[2] / "inventories" / "production.yml"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(PRODUCTION)


def test_split_names() -> None:
    assert split_names(" a, b ,,c ") == ["a", "b", "c"]
    assert split_names(None) == []


def test_default_is_every_host_that_runs_the_app(inv: Inventory) -> None:
    pairs = [(t.host, t.app.name) for t in select_targets(inv, None, "reports")]
    assert pairs == [("worker-1", "reports"), ("worker-2", "reports")]


def test_role_narrows_the_hosts(inv: Inventory) -> None:
    assert select_hosts(inv, None, "mail") == ["mail-1"]
    assert [t.host for t in select_targets(inv, "worker-1,mail-1", "shop", role="mail")] == ["mail-1"]


@pytest.mark.parametrize(
    ("host", "app", "role", "message"),
    [
        ("nope", None, None, "--host nope: no such host"),
        (None, "nope", None, "--app nope: no such app"),
        (None, None, "nope", "--role nope: no host has this role"),
        ("mail-1", "reports", None, "host mail-1: does not run app reports"),
    ],
)
def test_bad_selection_is_one_line_input_error(inv: Inventory, host: str | None, app: str | None,
                                              role: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        select_targets(inv, host, app, role)
    assert "\n" not in str(e.value) and str(PRODUCTION) in str(e.value)
