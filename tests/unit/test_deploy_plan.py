"""The deploy plan each host would run: stages in order, per source strategy (pure: nothing is sent)."""

from __future__ import annotations

from pathlib import Path

from deploytool.commands import release as rel
from deploytool.engine.lock import Holder
from deploytool.engine.plan import Script
from deploytool.inventory import load_inventory
from deploytool.inventory.model import Hooks
from deploytool.operations.deploy import Deploy
from deploytool.source import Revision
from deploytool.tasks.deploy import once_hosts
from deploytool.tasks.options import Target

SANDBOX = Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml"


def plan(strategy: str) -> dict[str, list[str]]:
    inv = load_inventory(SANDBOX)
    app = inv.apps_on("prod-a")["sample"]
    app = app.model_copy(update={"source": app.source.model_copy(update={"strategy": strategy})})
    d = Deploy(inv, "prod-a", app, Revision("HEAD", "c0ffee" * 6 + "abcd"), "20260101000000", None, ())
    return dict(d.plan())


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


def hooked_deploy(once_host: bool) -> Deploy:
    inv = load_inventory(SANDBOX)
    app = inv.apps_on("prod-a")["sample"]
    app = app.model_copy(update={"build": ("bundle install",), "hooks": Hooks.model_validate({
        "after_build": ["bin/assets"],
        "before_switch": [{"command": "bin/migrate", "once": True}, "bin/smoke"],
        "after_restart": ["bin/notify"],
    })})
    return Deploy(inv, "prod-a", app, Revision("HEAD", "c0ffee" * 6 + "abcd"), "20260101000000", None, (),
                  once_host=once_host)


def hooked(once_host: bool) -> list[tuple[str, list[str]]]:
    return hooked_deploy(once_host).plan()


def test_hooks_are_stages_at_their_points() -> None:
    d = hooked_deploy(once_host=True)
    names = [name for name, _ in hooked(once_host=True)]
    assert names == ["check", "lock", "upload", "code", "shared", "build", "after_build", "before_switch (once)",
                     "before_switch", "switch", "units", "quiet", "restart", "cleanup", "after_restart", "unlock"]
    stages = dict(hooked(once_host=True))
    # Run in the new release with the app's environment, exactly as a build step.
    [migrate] = stages["before_switch (once)"]
    assert migrate == rel.build(d.inv, "prod-a", d.app, "20260101000000", ["bin/migrate"], plan=True)
    assert "--property=WorkingDirectory=/srv/sample/releases/20260101000000" in migrate
    assert "--uid=deploy" in migrate and migrate.endswith("/bin/sh -ec bin/migrate")


def test_once_hooks_only_on_the_once_host() -> None:
    names = [name for name, _ in hooked(once_host=False)]
    assert "before_switch (once)" not in names and "before_switch" in names


def test_the_once_host_is_the_first_deployed_in_inventory_order() -> None:
    inv = load_inventory(SANDBOX)
    app = inv.apps_on("prod-b")["sample"]
    assert once_hosts(inv, [Target("prod-b", app), Target("prod-a", app)]) == {"sample": "prod-a"}
    assert once_hosts(inv, [Target("prod-b", app)]) == {"sample": "prod-b"}


def test_hooks_before_the_switch_arm_only_the_release_removal() -> None:
    """A failing hook before the switch is undone like a failing build: the new release is removed,
    `current`, the units and the workers are not touched. After the restart nothing is undone."""
    plan = hooked_deploy(once_host=True).build_plan({}, Holder.me("", "20260101000000"))
    scripts = [a for a in plan.actions if isinstance(a, Script)]
    [release] = [a for a in scripts if any(s.stage == "before_switch" for s in a.steps)]
    assert {arm for s in release.steps for arm in s.arms} == {"remove release"}
    [after] = [a for a in scripts if any(s.stage == "after_restart" for s in a.steps)]
    restart = next(i for i, a in enumerate(scripts) if any(s.stage == "restart" for s in a.steps))
    assert scripts[restart].commits and scripts.index(after) > restart and not any(s.arms for s in after.steps)
