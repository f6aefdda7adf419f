"""Secrets are what the inventory says is secret (`secrets:`, a secret name, a URL password): masked as whole
values in every output form; ordinary `environment:` values (`APP_ENV: production`) never, not even as part
of a file, host or stage name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deploytool import units
from deploytool.engine.plan import Plan
from deploytool.engine.runner import Job, dry_run_text
from deploytool.inventory import Inventory, load_inventory
from deploytool.redact import inventory_secrets, redact
from deploytool.report import HostReport, Reporter, StageReport, json_text
from deploytool.tasks.workers import redacted

ROOT = Path(__file__).resolve().parents[2]
APP_SECRET = "s3cr3t-app-value"
GROUP_SECRET = "gr0up'$ecret"
NAMED = "legacy-token-value"
URL_PASSWORD = "hunter22"
ORDINARY = ("production", "prod", "shop", "8080")

INVENTORY = f"""
hosts:
  prod-a:
    address: 10.0.0.1
    roles: [app]
  prod-b:
    address: 10.0.0.2
    roles: [app]
apps:
  shop:
    source:
      repository: /srv/git/shop
    deploy_to: /srv/production/shop
    environment:
      APP_ENV: production
      STAGE: prod
      PORT: 8080
      API_TOKEN: {NAMED}
      CACHE_URL: redis://:{URL_PASSWORD}@10.0.0.9:6379/1
    secrets:
      DATABASE_PASSWORD: {APP_SECRET}
    workers:
      production:
        kind: sidekiq
        secrets:
          SIGNING: "{GROUP_SECRET}"
"""


@pytest.fixture
def inv_path(tmp_path: Path) -> Path:
    # A path and an inventory name holding the ordinary values: they must come out as they are.
    path = tmp_path / "inventories" / "production.yml"
    path.parent.mkdir()
    path.write_text(INVENTORY)
    return path


@pytest.fixture
def inv(inv_path: Path) -> Inventory:
    return load_inventory(str(inv_path))


def fab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv/bin/fab"), "-r", str(ROOT), *args], capture_output=True, text=True,
                          check=False, timeout=60)


def test_secret_values_are_those_the_inventory_marks(inv: Inventory) -> None:
    found = set(inventory_secrets(inv))
    assert {APP_SECRET, GROUP_SECRET, NAMED, URL_PASSWORD} <= found
    assert not found & {"production", "prod", "8080", "redis://:hunter22@10.0.0.9:6379/1"}


def test_secrets_reach_the_environment_file_like_environment(inv: Inventory) -> None:
    app = inv.apps_on("prod-a")["shop"]
    env = units.environment(app, app.workers["production"])
    assert env["APP_ENV"] == "production" and env["DATABASE_PASSWORD"] == APP_SECRET
    assert env["SIGNING"] == GROUP_SECRET


def every_form(text: str, inv: Inventory) -> list[str]:
    """`text` as progress line, error, JSON report and dry run print it, with the inventory's secrets."""
    out: list[str] = []

    class Sink:
        def write(self, s: str) -> None:
            out.append(s)

        def flush(self) -> None:
            pass

    secrets = inventory_secrets(inv)
    reporter = Reporter(secrets, out=Sink())  # type: ignore[arg-type]
    reporter.line(text)
    report = HostReport("prod-a", "shop", "failed", [StageReport("production")], error=text,
                        details={"plan": [{"stage": "check", "commands": [text]}], "changes": [text]})
    reporter.summary([report])
    printed = "".join(out)
    printed += json_text({"error": text, "nested": [text]}, secrets)
    job = Job("prod-a", report.app, lambda _: Plan(()), title=text)  # type: ignore[arg-type]
    printed += reporter.redact(dry_run_text([job], [HostReport("prod-a", "shop", details=report.details)]))
    return [printed, json.dumps(json.loads(json_text({"e": text}, secrets)))]


@pytest.mark.parametrize("secret", [APP_SECRET, GROUP_SECRET, NAMED, URL_PASSWORD])
def test_secrets_are_masked_in_every_output_form(secret: str, inv: Inventory) -> None:
    import shlex

    for text in (f"export X={secret}", f"export X={shlex.quote(secret)}", json.dumps({"v": secret}),
                 f"redis://:{URL_PASSWORD}@10.0.0.9/1"):
        for printed in every_form(text, inv):
            assert secret not in printed and "***" in printed, printed


def test_ordinary_values_are_never_masked_not_even_in_names(inv: Inventory) -> None:
    text = ("inventories/production.yml: --host prod-c: no such host (known: prod-a, prod-b); "
            "stage production; APP_ENV=production PORT=8080 /srv/production/shop")
    for printed in every_form(text, inv):
        assert "***" not in printed, printed
        assert "inventories/production.yml" in printed and "prod-a, prod-b" in printed


def test_bad_input_names_file_and_hosts_unmasked(inv_path: Path) -> None:
    r = fab("workers.render", "--inventory", str(inv_path), "--host", "prod-c")
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: {inv_path}: --host prod-c: no such host (known: prod-a, prod-b)")


def test_a_run_dry_run_masks_a_secret_and_shows_ordinary_values(inv_path: Path) -> None:
    r = fab("run", "--dry-run", "--inventory", str(inv_path), "--host", "prod-a", "--",
            "echo", APP_SECRET, "production", URL_PASSWORD)
    assert r.returncode == 0, r.stderr
    assert APP_SECRET not in r.stdout and URL_PASSWORD not in r.stdout
    assert r.stdout.rstrip().endswith("-- /usr/bin/env echo *** production ***"), r.stdout
    assert "/srv/production/shop/current" in r.stdout


def test_render_masks_only_secrets_unless_asked(inv_path: Path, inv: Inventory) -> None:
    r = fab("workers.render", "--inventory", str(inv_path), "--host", "prod-a")
    assert r.returncode == 0, r.stderr
    for secret in (APP_SECRET, GROUP_SECRET, NAMED, URL_PASSWORD):
        assert secret not in r.stdout
    assert "APP_ENV='production'" in r.stdout and "STAGE='prod'" in r.stdout and "PORT='8080'" in r.stdout
    assert "DATABASE_PASSWORD='***'" in r.stdout and "API_TOKEN='***'" in r.stdout
    assert "CACHE_URL='redis://:***@10.0.0.9:6379/1'" in r.stdout
    # A value holding a quote is written double-quoted with escapes: masked in that form too.
    assert 'SIGNING="***"' in r.stdout
    assert "# --- prod-a: shop-production@.service" in r.stdout
    shown = fab("workers.render", "--inventory", str(inv_path), "--host", "prod-a", "--show-secrets")
    assert f"DATABASE_PASSWORD='{APP_SECRET}'" in shown.stdout and f"API_TOKEN='{NAMED}'" in shown.stdout


def test_redacted_env_file_keeps_ordinary_lines(inv: Inventory) -> None:
    app = inv.apps_on("prod-a")["shop"]
    env = units.EnvFile("/etc/deploytool/shop/production.env",
                        "APP_ENV='production'\n" f"DATABASE_PASSWORD='{APP_SECRET}'\n")
    assert redacted(env, inventory_secrets(inv)).content == "APP_ENV='production'\nDATABASE_PASSWORD='***'\n"
    assert app.variables["APP_ENV"] == "production"


def test_a_name_in_both_environment_and_secrets_is_bad_input(inv_path: Path) -> None:
    inv_path.write_text(INVENTORY.replace("      DATABASE_PASSWORD:", "      APP_ENV:"))
    r = fab("inventory.check", "--inventory", str(inv_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "APP_ENV: in both `environment` and `secrets`" in r.stderr and "apps.shop" in r.stderr


def test_a_bad_secret_value_is_not_echoed(inv_path: Path) -> None:
    inv_path.write_text(INVENTORY.replace(f"DATABASE_PASSWORD: {APP_SECRET}",
                                          f"DATABASE_PASSWORD: [{APP_SECRET}]"))
    r = fab("inventory.check", "--inventory", str(inv_path))
    assert r.returncode == 2 and "secrets.DATABASE_PASSWORD" in r.stderr
    assert APP_SECRET not in r.stderr


def test_url_password_alone_is_masked_too() -> None:
    # A password of a URL in the inventory is masked wherever it appears, not only inside its URL.
    assert redact(f"AUTH {URL_PASSWORD} failed", [URL_PASSWORD]) == "AUTH *** failed"


def test_secrets_merge_like_environment(inv_path: Path) -> None:
    # A host's override of one secret: merged over the app's (its other secrets stay), masked too.
    inv_path.write_text(INVENTORY.replace("    address: 10.0.0.2\n", "    address: 10.0.0.2\n    apps:\n"
                                          "      shop:\n        secrets: {EXTRA_SECRET: b-only-value}\n", 1))
    inv = load_inventory(str(inv_path))
    a, b = inv.apps_on("prod-a")["shop"], inv.apps_on("prod-b")["shop"]
    assert a.secrets == {"DATABASE_PASSWORD": APP_SECRET}
    assert b.secrets == {"DATABASE_PASSWORD": APP_SECRET, "EXTRA_SECRET": "b-only-value"}
    assert units.environment(b, b.workers["production"])["EXTRA_SECRET"] == "b-only-value"
    assert "b-only-value" in inventory_secrets(inv)
