"""Which workers still run with an older version of the env file their units load (after config.upload)."""

from __future__ import annotations

from pathlib import Path

from deploytool import stale_workers
from deploytool.inventory import load_inventory

SANDBOX = Path(__file__).resolve().parents[2] / "inventories" / "sandbox.yml"


def test_every_group_loads_the_env_file_and_no_other_linked_file() -> None:
    inv = load_inventory(SANDBOX)
    app = inv.apps_on("prod-a")["sample"]
    env = f"{app.shared_path}/config/app.env"
    assert [g.name for g in stale_workers.loading_groups(inv, "prod-a", app, env)] == list(app.workers)
    assert "sample-sidekiq@3.service" in stale_workers.wanted_units(inv, "prod-a", app, env)
    assert stale_workers.wanted_units(inv, "prod-a", app, f"{app.shared_path}/config/other.key") == []


def test_running_workers_started_before_the_change_are_stale() -> None:
    out = "\n".join([
        f"{stale_workers.MTIME} 1796591737.500000",
        "Id=a@1.service", "ActiveState=active", "ExecMainStartTimestamp=Sun 2026-12-06 21:15:37.400000 UTC", "",
        "Id=a@2.service", "ActiveState=active", "ExecMainStartTimestamp=Sun 2026-12-06 21:15:37.600000 UTC", "",
        "Id=a@3.service", "ActiveState=inactive", "ExecMainStartTimestamp=Sun 2026-12-06 21:00:00.000000 UTC", "",
        "Id=a@4.service", "ActiveState=inactive", "ExecMainStartTimestamp=", ""])
    # 1796591737.5 is 2026-12-06 21:15:37.5 UTC: @1 started before it, @2 after; @3 and @4 do not run.
    loading = ["a@1.service", "a@2.service", "a@3.service", "a@4.service"]
    assert stale_workers.parse(out, loading) == stale_workers.Seen(["a@1.service", "a@2.service"], ["a@1.service"])
    # A unit that does not load the file is never stale; without the file, nothing is.
    assert stale_workers.parse(out, ["a@2.service"]).stale == []
    assert stale_workers.parse(out.replace("1796591737.500000", "none"), loading).stale == []


def test_the_read_command_asks_systemd_with_microseconds() -> None:
    inv = load_inventory(SANDBOX)
    app = inv.apps_on("prod-a")["sample"]
    text = stale_workers.read_command(app, "/srv/sample/shared/config/app.env", ["sample-rq@1.service"])
    assert text == (f"echo {stale_workers.MTIME} $(stat -c %.6Y /srv/sample/shared/config/app.env 2>/dev/null "
                    "|| echo none); sudo -n systemctl show --timestamp=us+utc "
                    "--property=Id,ActiveState,ExecMainStartTimestamp sample-rq@1.service")
