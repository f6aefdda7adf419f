"""The deploy plan each host would run: stages in order, per source strategy (pure: nothing is sent)."""

from __future__ import annotations

from pathlib import Path

from deploytool.deploy import Deploy
from deploytool.inventory import load_inventory
from deploytool.source import Revision

SANDBOX = Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml"


def plan(strategy: str) -> dict[str, list[str]]:
    inv = load_inventory(SANDBOX)
    app = inv.apps_on("prod-a")["sample"]
    app = app.model_copy(update={"source": app.source.model_copy(update={"strategy": strategy})})
    d = Deploy(inv, "prod-a", app, Revision("HEAD", "c0ffee" * 6 + "abcd"), "20260101000000", None, ())
    return dict(d.plan(["(no unit changes)"]))


def test_archive_strategy_uploads_and_unpacks() -> None:
    stages = plan("archive")
    assert list(stages) == ["check", "lock", "upload", "code", "shared", "switch", "units", "quiet", "restart",
                            "cleanup", "unlock"]
    assert stages["upload"] == ["upload git archive c0ffeec0ffee -> /srv/sample/releases/.20260101000000.tar.gz"]
    assert "tar -xzf /srv/sample/releases/.20260101000000.tar.gz" in stages["code"][0]


def test_git_strategy_updates_the_mirror_and_exports() -> None:
    stages = plan("git")
    assert "upload" not in stages
    assert "git clone --mirror" in stages["code"][0] and "remote update --prune" in stages["code"][0]


def test_quiet_comes_right_before_the_restart() -> None:
    stages = list(plan("archive"))
    assert stages.index("switch") < stages.index("quiet") == stages.index("restart") - 1
