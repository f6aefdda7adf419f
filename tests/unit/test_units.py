"""Rendering worker units: golden files per kind, per-host differences, overrides, systemd-analyze verify.

Goldens live in tests/unit/golden/<host>/ and are reviewed by eye; `UPDATE_GOLDEN=1 pytest
tests/unit/test_units.py` rewrites them after an intended change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import systemd_parser
from in_ci import required_in_ci

from deploytool.errors import InputError
from deploytool.inventory import Inventory, load_inventory
from deploytool.systemd_quote import Specifier, env_file
from deploytool.units import (
    Runtime,
    UnitFile,
    environment,
    environment_file,
    environment_files,
    exec_start,
    instances,
    render_app,
    render_host,
    runtime,
    service_settings,
    target_name,
    template_name,
    unit_dir,
)

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
UNITS_INVENTORY = HERE / "inventories" / "units.yml"
KINDS = ["sidekiq", "celery", "rq", "dramatiq", "sneakers", "command"]


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(UNITS_INVENTORY)


@pytest.fixture(scope="module")
def sandbox() -> Inventory:
    return load_inventory("sandbox")


def _by_name(units: list[UnitFile]) -> dict[str, str]:
    return {u.name: u.content for u in units}


# --- golden files --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["w1", "w2"])
def test_units_match_golden_files(inv: Inventory, host: str) -> None:
    rendered = _by_name(render_host(inv, host))
    folder = GOLDEN / host
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, content in rendered.items():
            (folder / name).write_text(content)
    golden = {p.name: p.read_text() for p in folder.iterdir()}
    assert sorted(rendered) == sorted(golden), "units added or removed: UPDATE_GOLDEN=1 after review"
    for name, content in rendered.items():
        assert content == golden[name], f"{host}/{name} differs from its golden file"


def test_every_kind_has_a_golden_unit(inv: Inventory) -> None:
    names = {p.name for p in (GOLDEN / "w1").iterdir()}
    assert {f"shop-{kind}@.service" for kind in KINDS} <= names


def test_rendering_is_deterministic(inv: Inventory) -> None:
    first = [(u.name, u.sha256) for u in render_host(inv, "w1")]
    again = [(u.name, u.sha256) for u in render_host(load_inventory(UNITS_INVENTORY), "w1")]
    assert first == again


# --- names and argv ------------------------------------------------------------------------------


def test_names(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    celery = shop.workers["celery"]
    assert template_name(shop, celery) == "shop-celery@.service"
    assert target_name(shop) == "shop-workers.target"
    assert instances(shop, celery) == [f"shop-celery@{i}.service" for i in (1, 2, 3, 4)]
    assert instances(inv.apps_on("w2")["shop"], inv.apps_on("w2")["shop"].workers["celery"]) == [
        "shop-celery@1.service",
        "shop-celery@2.service",
    ]
    assert unit_dir(shop) == "/etc/systemd/system"
    assert unit_dir(inv.apps_on("w1")["tools"]) == ".config/systemd/user"


def test_exec_start_is_data_with_the_instance_as_a_specifier(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    argv = exec_start(shop, shop.workers["celery"], "w1")
    node = argv[-1]
    assert isinstance(node, Specifier)
    assert str(node) == "shop-celery-%i@w1"
    assert node.expand({"i": "2"}) == "shop-celery-2@w1"
    assert argv[:-1] == [
        "/srv/shop/venv/bin/celery", "-A", "shop", "worker", "--concurrency", "8", "-Q", "mail,reports", "-n",
    ]


def test_exec_start_per_kind(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    flat = {g: [str(a) for a in exec_start(shop, shop.workers[g], "w1")] for g in KINDS}
    assert flat["sidekiq"] == [
        "bundle", "exec", "sidekiq", "-e", "production", "-C", "config/sidekiq.yml", "-c", "10",
        "-q", "critical,3", "-q", "default,1", "-q", "low", "-t", "40", "-g", "shop-sidekiq-%i",
    ]
    # RQ: positional queues, the default grace (no flag for it); its URL comes from the environment file.
    assert flat["rq"] == ["rq", "worker", "high", "default"]
    # Dramatiq counts its grace in milliseconds; a relative program lives in the release.
    assert flat["dramatiq"] == [
        "/srv/shop/current/.venv/bin/dramatiq", "shop.tasks", "--threads", "4", "-Q", "events",
        "--worker-shutdown-timeout", "120000", "--processes", "1",
    ]
    assert flat["sneakers"] == ["/srv/shop/current/bin/sneakers", "work", "Mailer", "--require", "config/boot.rb"]
    # kind `command`: the inventory's argv, whole and untouched.
    assert flat["command"] == ["/usr/bin/env", "python3", "-m", "shop.poller", "--interval", "5"]


# --- what lands in the unit ----------------------------------------------------------------------


def _lines(content: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in content.splitlines() if line.startswith(f"{key}=")]


def test_environment_goes_to_a_file_not_the_unit(inv: Inventory) -> None:
    units = _by_name(render_host(inv, "w1"))
    assert not any(_lines(u, "Environment") for u in units.values())
    assert not any("APP_ENV" in u or "10.0.0." in u for u in units.values())
    # Ours first, then the operator's shared env file, which wins.
    assert _lines(units["shop-celery@.service"], "EnvironmentFile") == [
        "/etc/deploytool/shop/celery.env", "/srv/shop/shared/config/app.env",
    ]
    # User mode: in the deploy user's home, which a user unit names %h.
    assert _lines(units["tools-tricky@.service"], "EnvironmentFile") == [
        "%h/.config/deploytool/tools/tricky.env",
    ]


def test_environment_order_and_redis_url(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    assert environment(shop, shop.workers["celery"]) == {
        "APP_ENV": "production", "RAILS_MAX_THREADS": "10", "C_FORCE_ROOT": "false",
        "REDIS_URL": "redis://10.0.0.5:6379/1",
    }
    # A group's own REDIS_URL wins; RQ also gets its own variable for the URL.
    assert environment(shop, shop.workers["dramatiq"])["REDIS_URL"] == "redis://10.0.0.7:6379/2"
    assert environment(shop, shop.workers["rq"])["RQ_REDIS_URL"] == "redis://10.0.0.5:6379/1"
    assert environment_file(shop, shop.workers["rq"]) == "/etc/deploytool/shop/rq.env"
    tools = inv.apps_on("w1")["tools"]
    assert environment_file(tools, tools.workers["tricky"]) == "$HOME/.config/deploytool/tools/tricky.env"
    files = {e.path: e.content for e in environment_files(inv, "w1", shop)}
    assert files["/etc/deploytool/shop/celery.env"] == (
        "APP_ENV='production'\nRAILS_MAX_THREADS='10'\nC_FORCE_ROOT='false'\nREDIS_URL='redis://10.0.0.5:6379/1'\n"
    )


HOSTILE_VALUES = {
    "GREETING": 'say "hi" to $USER at 100% \\ now',
    "QUOTE": "it's $(id) `id` \\\" \\n",
    "SPACES": "  lead and trail  ",
    "HASH": "#not a comment",
    "TAB": "a\tb",
    "EMPTY": "",
    "UNICODE": "ünïcode",
}


@required_in_ci(systemd_parser.available(), "libsystemd-shared-252")
def test_environment_file_reads_back_exactly_in_systemd_and_in_a_shell(tmp_path: Path) -> None:
    path = tmp_path / "g.env"
    path.write_text(env_file(HOSTILE_VALUES))
    assert systemd_parser.env_file(path) == HOSTILE_VALUES
    dump = f"import os, json; print(json.dumps({{k: os.environ[k] for k in {sorted(HOSTILE_VALUES)!r}}}))"
    shell = subprocess.run(["sh", "-c", 'set -a && . "$1" && exec python3 -c "$2"', "sh", str(path), dump],
                           capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    assert json.loads(shell.stdout) == HOSTILE_VALUES


def test_environment_file_refuses_what_systemd_would_drop() -> None:
    with pytest.raises(ValueError, match="control character"):
        env_file({"A": "bell\x07"})
    with pytest.raises(ValueError, match="newline"):
        env_file({"A": "two\nlines"})
    with pytest.raises(ValueError, match="not an environment variable name"):
        env_file({"1A": "x"})


def test_user_mode(inv: Inventory) -> None:
    units = _by_name(render_host(inv, "w1", app_name="tools"))
    assert sorted(units) == ["tools-tricky@.service", "tools-workers.target"]
    worker = units["tools-tricky@.service"]
    assert "User=" not in worker
    assert "network-online" not in worker
    assert _lines(units["tools-workers.target"], "WantedBy") == ["default.target"]


def test_system_mode_users(inv: Inventory) -> None:
    w1 = _by_name(render_host(inv, "w1", app_name="shop"))
    w2 = _by_name(render_host(inv, "w2", app_name="shop"))
    assert _lines(w1["shop-sidekiq@.service"], "User") == ["deploy"]  # the host's ssh user
    assert _lines(w2["shop-sidekiq@.service"], "User") == ["ops"]
    assert _lines(w1["shop-rq@.service"], "User") == ["rqrunner"]  # the group's own user
    assert "shop-sneakers@.service" not in w2  # that group needs the worker role, which w2 lacks


@required_in_ci(systemd_parser.available(), "libsystemd-shared-252")
def test_tricky_command_reaches_the_process_unchanged(inv: Inventory) -> None:
    # inventory → unit text → systemd's own parser → the argv the worker gets.
    app = inv.apps_on("w1")["tools"]
    unit = _by_name(render_app(inv, "w1", app))["tools-tricky@.service"]
    [line] = _lines(unit, "ExecStart")
    path, argv = systemd_parser.exec_argv(line, instance="1", env={"HOME": "/home/deploy", "USER": "deploy"})
    assert path == "/usr/bin/printf"
    assert argv == list(app.workers["tricky"].command or ())
    [workdir] = _lines(unit, "WorkingDirectory")
    assert workdir == "/home/deploy/apps/tools 100%%/current"


def test_sandbox_hosts_differ_where_their_settings_differ(sandbox: Inventory) -> None:
    a_app, b_app = sandbox.apps_on("prod-a")["sample"], sandbox.apps_on("prod-b")["sample"]
    sidekiq_a, sidekiq_b = a_app.workers["sidekiq"], b_app.workers["sidekiq"]
    assert instances(a_app, sidekiq_a) == [f"sample-sidekiq@{i}.service" for i in (1, 2, 3)]
    assert instances(b_app, sidekiq_b) == [f"sample-sidekiq@{i}.service" for i in (1, 2)]
    a, b = _by_name(render_host(sandbox, "prod-a")), _by_name(render_host(sandbox, "prod-b"))
    groups = ["celery-rabbit", "celery-redis", "consumer", "dramatiq", "rq", "sidekiq"]
    assert sorted(a) == sorted(b) == [*(f"sample-{g}@.service" for g in groups), "sample-workers.target"]
    # The process count lives in the instance list; threads (prod-b's own 3) in the unit.
    assert _lines(a["sample-sidekiq@.service"], "ExecStart")[0].split(" -c ")[1].startswith("5 ")
    assert _lines(b["sample-sidekiq@.service"], "ExecStart")[0].split(" -c ")[1].startswith("3 ")

    def body(text: str) -> str:  # everything below the header, which names the host
        return text.split("\n", 1)[1]

    assert body(a["sample-rq@.service"]) == body(b["sample-rq@.service"])


# --- templates -----------------------------------------------------------------------------------


def test_project_template_overrides_the_built_in_one(inv: Inventory, tmp_path: Path) -> None:
    (tmp_path / "worker@.service.j2").write_text(
        "# {{ header }}\n[Unit]\nX-Deploytool-App={{ app.name }}\n[Service]\nExecStart={{ exec_start }}\n"
        "Nice=5\nEnvironment={{ 'X=' ~ ('50%' | systemd_escape) }}\n"
    )
    units = _by_name(render_host(inv, "w1", app_name="shop", template_dirs=[tmp_path]))
    assert units["shop-rq@.service"].endswith("Nice=5\nEnvironment=X=50%%\n")
    # The target has no project template: the built-in one is used.
    assert units["shop-workers.target"] == _by_name(render_host(inv, "w1", app_name="shop"))["shop-workers.target"]


def test_project_template_must_keep_the_app_marker(inv: Inventory, tmp_path: Path) -> None:
    (tmp_path / "workers.target.j2").write_text("[Unit]\nDescription={{ app.name }}\n")
    with pytest.raises(InputError, match="must keep the line `X-Deploytool-App=shop`"):
        render_host(inv, "w1", app_name="shop", template_dirs=[tmp_path])


def test_undefined_template_variable_is_an_input_error(inv: Inventory, tmp_path: Path) -> None:
    (tmp_path / "workers.target.j2").write_text("[Unit]\nDescription={{ no_such_thing }}\n")
    with pytest.raises(InputError, match="no_such_thing"):
        render_host(inv, "w1", template_dirs=[tmp_path])


def test_unknown_host_or_app(inv: Inventory) -> None:
    with pytest.raises(InputError, match="no host"):
        render_host(inv, "nope")
    with pytest.raises(InputError, match="does not run there"):
        render_host(inv, "w1", app_name="nope")


def test_unwritable_program_names_the_group(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    bad = shop.workers["command"].model_copy(update={"command": ("-rm", "x")})
    app = shop.model_copy(update={"workers": {"command": bad}})
    with pytest.raises(InputError, match=r"apps\.shop\.workers\.command: program '-rm'"):
        render_app(inv, "w1", app)


# --- systemd-analyze verify ----------------------------------------------------------------------

# The only complaint allowed: the worker's program is not installed on this machine (it arrives with
# the release). systemd 252's verify does not check WorkingDirectory=, EnvironmentFile= or User=.
ALLOWED = re.compile(r"^\S+\.service: Command \S+ is not executable: No such file or directory$")


def _verify(units: list[UnitFile], tmp_path: Path, user_mode: bool) -> list[str]:
    unit_path = tmp_path / "units"
    unit_path.mkdir(parents=True)
    for unit in units:
        (unit_path / unit.name).write_text(unit.content)
    names = [u.name.replace("@.", "@1.") for u in units]  # verify an instance of each template
    # No systemd runs here: --generators=no skips generators (they want a live /run/systemd),
    # --man=no skips Documentation= lookups, --recursive-errors=no keeps the host's own units out of
    # the verdict. SYSTEMD_UNIT_PATH (trailing ':' = plus the defaults) finds templates and targets;
    # a user manager also needs an XDG_RUNTIME_DIR.
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_path}:", "XDG_RUNTIME_DIR": str(runtime)}
    cmd = ["systemd-analyze", "verify", "--man=no", "--generators=no", "--recursive-errors=no"]
    proc = subprocess.run(
        [*cmd, *(["--user"] if user_mode else []), *names],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    # verify exits 0 on some parse errors ("..., ignoring"), so judge by what it prints.
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line and not ALLOWED.match(line)]


needs_analyze = required_in_ci(shutil.which("systemd-analyze") is not None, "systemd-analyze")


@needs_analyze
@pytest.mark.parametrize(("inventory", "host"), [(UNITS_INVENTORY, "w1"), (UNITS_INVENTORY, "w2"),
                                                  ("sandbox", "prod-a"), ("sandbox", "prod-b")])
def test_systemd_analyze_verify_accepts_every_unit(inventory: str | Path, host: str, tmp_path: Path) -> None:
    inv = load_inventory(inventory)
    for i, (name, app) in enumerate(inv.apps_on(host).items()):
        units = render_app(inv, host, app)
        complaints = _verify(units, tmp_path / str(i), user_mode=app.systemd == "user")
        assert complaints == [], f"{name} on {host}"


@needs_analyze
def test_verify_does_complain_about_a_broken_unit(inv: Inventory, tmp_path: Path) -> None:
    # The filter above must not swallow real errors.
    [unit, target] = render_host(inv, "w1", app_name="tools")
    broken = UnitFile(unit.name, unit.content.replace("Type=exec", "Type=bogus"))
    assert any("bogus" in line for line in _verify([broken, target], tmp_path, user_mode=True))


def test_runtime_is_what_the_unit_says(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    rt = runtime(inv, "w1", shop, shop.workers["rq"])
    assert rt == Runtime(systemd="system", user="rqrunner", working_directory="/srv/shop/current",
                         environment_files=("/etc/deploytool/shop/rq.env", "/srv/shop/shared/config/app.env"),
                         umask="0027")
    unit = _by_name(render_app(inv, "w1", shop))["shop-rq@.service"]
    assert _lines(unit, "User") == [rt.user]
    assert _lines(unit, "WorkingDirectory") == [rt.working_directory]
    assert _lines(unit, "EnvironmentFile") == list(rt.environment_files)
    assert _lines(unit, "UMask") == [rt.umask]
    tools = inv.apps_on("w1")["tools"]
    user_rt = runtime(inv, "w1", tools, tools.workers["tricky"])
    assert user_rt.user is None and user_rt.environment_files == ("$HOME/.config/deploytool/tools/tricky.env",)


# --- systemd-analyze security --------------------------------------------------------------------

# The exposure systemd-analyze reports for a default worker unit (sandboxing as units.SANDBOXING has
# it, a non-root user); measured 1.5 (Sidekiq) to 1.6 on systemd 252, stated in docs/security.md.
MAX_EXPOSURE = 1.6
EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")


def _exposure(unit: UnitFile, tmp_path: Path) -> float:
    path = tmp_path / unit.name.replace("@.", "@1.")
    path.write_text(unit.content)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    found = EXPOSURE.search(proc.stdout + proc.stderr)
    assert found, proc.stdout + proc.stderr
    return float(found.group(2))


@needs_analyze
@pytest.mark.parametrize("host", ["prod-a", "prod-b"])
def test_sandbox_units_are_confined(sandbox: Inventory, host: str, tmp_path: Path) -> None:
    for unit in render_host(sandbox, host):
        if unit.name.endswith("@.service"):
            assert _exposure(unit, tmp_path) <= MAX_EXPOSURE, unit.name


@needs_analyze
def test_every_kind_is_confined_by_default_and_root_only_when_asked(inv: Inventory, tmp_path: Path) -> None:
    units = _by_name(render_host(inv, "w1", app_name="shop"))
    for kind in KINDS:
        exposure = _exposure(UnitFile(f"shop-{kind}@.service", units[f"shop-{kind}@.service"]), tmp_path)
        if kind == "command":  # `user: root` in the inventory: root keeps its capabilities
            assert _lines(units["shop-command@.service"], "User") == ["root"]
            assert "CapabilityBoundingSet=" not in units["shop-command@.service"]
            assert exposure > MAX_EXPOSURE
        else:
            assert exposure <= MAX_EXPOSURE, kind


def test_group_settings_override_the_defaults_in_place_of_them(inv: Inventory) -> None:
    shop = inv.apps_on("w1")["shop"]
    settings = service_settings(inv, "w1", shop, shop.workers["sidekiq"])
    keys = [k for k, _ in settings]
    assert len(keys) == len(set(keys))
    as_dict = dict(settings)
    assert as_dict["ProtectHome"] == "yes"  # the group's, not the default read-only
    assert as_dict["ReadWritePaths"] == "/srv/shop/shared -/var/cache/shop"
    assert (as_dict["MemoryMax"], as_dict["CPUQuota"], as_dict["Nice"], as_dict["LimitNOFILE"]) == (
        "2G", "150%", "5", "65536")
    # The defaults elsewhere: shared/ writable, the rest of the file system read-only.
    rq = dict(service_settings(inv, "w1", shop, shop.workers["rq"]))
    assert (rq["ProtectSystem"], rq["ReadWritePaths"], rq["ProtectHome"]) == ("strict", "/srv/shop/shared", "read-only")
    assert rq["Restart"] == "always" and rq["NoNewPrivileges"] == "yes"


def test_user_mode_keeps_only_what_an_unprivileged_manager_can_apply(inv: Inventory) -> None:
    tools = inv.apps_on("w1")["tools"]
    keys = {k for k, _ in service_settings(inv, "w1", tools, tools.workers["tricky"])}
    assert "NoNewPrivileges" in keys and "ProtectSystem" not in keys and "PrivateTmp" not in keys


def test_migrating_doc_example_renders_what_its_table_says(tmp_path: Path) -> None:
    doc = (HERE.parent.parent / "docs" / "migrating.md").read_text()
    blocks = dict(re.findall(r"```yaml\n# (\S+)[^\n]*\n(.*?)```", doc, re.S))
    (tmp_path / "hosts").mkdir()
    (tmp_path / "common.yml").write_text(blocks["common.yml"])
    (tmp_path / "hosts" / "worker-big-1.yml").write_text(blocks["hosts/worker-big-1.yml"])
    inv = load_inventory(tmp_path)
    app = inv.apps_on("worker-big-1")["shop"]
    assert instances(app, app.workers["sidekiq"])[-1] == "shop-sidekiq@4.service"
    unit = _by_name(render_app(inv, "worker-big-1", app))["shop-sidekiq@.service"]
    [start] = _lines(unit, "ExecStart")
    assert start.startswith("sidekiq -C config/sidekiq.yml -c 20 -q critical,2 -q default ")
    for line in ("User=shop", "MemoryMax=2G", "CPUQuota=150%", "Nice=5", "LimitNOFILE=65536", "TasksMax=512",
                 "OOMScoreAdjust=200", "EnvironmentFile=/etc/deploytool/shop/sidekiq.env"):
        assert line in unit.splitlines()
