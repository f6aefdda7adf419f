"""The units stage when nothing changed: unitfiles.install runs here for real by a local shell in user mode
(units under $HOME) against a stand-in `systemctl` that records its calls and makes and removes the
enablement links as systemd's `enable`/`disable` do. A second install of the same units makes no
systemctl call and writes nothing; each kind of difference (a unit file, an instance's or the target's
link, an environment file in the inventory or on the host, a unit or environment file too many) runs the
sync, which puts it right."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fake_systemctl import fake_systemctl_env

from deploytool import systemd_quote
from deploytool.commands.unitfiles import RECORD, enablement_links, install, unchanged
from deploytool.inventory import App
from deploytool.units import MARKER, EnvFile

# Records each call; `enable` links each unit into the .wants/ of its file's WantedBy= (an instance's
# file: its template), `disable` removes its links, `is-enabled` answers from the links.
FAKE_SYSTEMCTL = r"""#!/bin/sh
echo "$*" >> "$STATE/calls"
d="$HOME/.config/systemd/user"
file_of() { case "$1" in *@*.service) echo "${1%%@*}@.service";; *) echo "$1";; esac; }
case "$2" in
  is-enabled) shift 2; for u in "$@"; do
      if ls "$d"/*.wants/"$u" >/dev/null 2>&1; then echo enabled; else echo disabled; fi; done ;;
  list-units) cat "$STATE/loaded" ;;
  enable) shift 3; for u in "$@"; do
      for t in $(sed -n 's/^WantedBy=//p' "$d/$(file_of "$u")"); do
        mkdir -p "$d/$t.wants" && ln -sf "$d/$(file_of "$u")" "$d/$t.wants/$u"; done; done ;;
  disable) for u in "$@"; do case "$u" in -*) ;; *) rm -f "$d"/*.wants/"$u";; esac; done ;;
esac
exit 0
"""

TARGET = "shop-workers.target"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return fake_systemctl_env(tmp_path, FAKE_SYSTEMCTL, ("calls", "loaded"))


@pytest.fixture
def app() -> App:
    return App.model_validate({"name": "shop", "source": {"repository": "/x"}, "deploy_to": "/srv/shop",
                               "systemd": "user"})


def template(name: str, body: str = "ExecStart=/bin/true") -> tuple[str, str]:
    return name, f"[Unit]\n{MARKER}=shop\n[Service]\n{body}\n[Install]\nWantedBy={TARGET}\n"


TARGET_FILE = (TARGET, f"[Unit]\n{MARKER}=shop\n[Install]\nWantedBy=default.target\n")
FILES = [template("shop-a@.service"), TARGET_FILE]
WANTED = ["shop-a@1.service", "shop-a@2.service"]


def env_file(name: str, value: str = "s3cr3t") -> EnvFile:
    return EnvFile(f"$HOME/.config/deploytool/shop/{name}", systemd_quote.env_file({"TOKEN": value}))


def run(script: str, env: dict[str, str]) -> str:
    r = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["STATE"], "calls")
    lines = path.read_text().splitlines()
    path.write_text("")
    return lines


def unit_dir(env: dict[str, str]) -> Path:
    return Path(env["HOME"], ".config/systemd/user")


def env_dir(env: dict[str, str]) -> Path:
    return Path(env["HOME"], ".config/deploytool/shop")


def mtimes(*dirs: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for d in dirs for p in [d, *d.rglob("*")]}


def installed(app: App, env: dict[str, str], files: list[tuple[str, str]] = FILES,
              wanted: list[str] = WANTED, env_files: tuple[EnvFile, ...] = (env_file("a.env"),)) -> str:
    return run(install(app, files, wanted, TARGET, list(env_files)), env)


def test_a_first_install_syncs_and_links_as_systemd_would(app: App, env: dict[str, str]) -> None:
    assert installed(app, env).split() == ["changed"]
    made = calls(env)
    assert "--user daemon-reload" in made
    assert f"--user enable --quiet {TARGET} shop-a@1.service shop-a@2.service" in made
    assert sorted(p.name for p in (unit_dir(env) / f"{TARGET}.wants").iterdir()) == WANTED
    assert (unit_dir(env) / "default.target.wants" / TARGET).is_symlink()
    record = env_dir(env) / RECORD
    assert record.stat().st_mode & 0o777 == 0o600
    assert "s3cr3t" not in record.read_text()


def test_nothing_changed_means_no_systemctl_and_nothing_written(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    calls(env)
    before = mtimes(unit_dir(env), env_dir(env))
    assert installed(app, env) == ""
    assert calls(env) == []
    assert mtimes(unit_dir(env), env_dir(env)) == before


def test_a_unit_file_edited_on_the_host_is_written_back_and_reloaded(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    path = unit_dir(env) / "shop-a@.service"
    path.write_text(path.read_text().replace("/bin/true", "/bin/false"))
    calls(env)
    assert installed(app, env).split() == ["changed"]
    assert "--user daemon-reload" in calls(env)
    assert "/bin/true" in path.read_text()
    assert installed(app, env) == "" and calls(env) == []


def test_a_new_unit_content_is_installed(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    calls(env)
    files = [template("shop-a@.service", "ExecStart=/bin/true -c 5"), TARGET_FILE]
    assert installed(app, env, files).split() == ["changed"]
    assert "--user daemon-reload" in calls(env)
    assert "-c 5" in (unit_dir(env) / "shop-a@.service").read_text()


@pytest.mark.parametrize("link", [f"{TARGET}.wants/shop-a@2.service", f"default.target.wants/{TARGET}"])
def test_a_missing_enablement_link_is_enabled_again(app: App, env: dict[str, str], link: str) -> None:
    installed(app, env)
    (unit_dir(env) / link).unlink()
    calls(env)
    assert installed(app, env) == ""  # no file changed: the workers need no restart for it
    assert any(c.startswith("--user enable --quiet") for c in calls(env))
    assert (unit_dir(env) / link).is_symlink()


def test_fewer_processes_disable_the_surplus_instance(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    calls(env)
    installed(app, env, wanted=WANTED[:1])
    assert "--user disable --quiet --now shop-a@2.service" in calls(env)
    assert sorted(p.name for p in (unit_dir(env) / f"{TARGET}.wants").iterdir()) == WANTED[:1]
    assert installed(app, env, wanted=WANTED[:1]) == "" and calls(env) == []


def test_a_unit_of_a_removed_group_is_removed(app: App, env: dict[str, str]) -> None:
    installed(app, env, [*FILES, template("shop-b@.service")], [*WANTED, "shop-b@1.service"])
    calls(env)
    assert installed(app, env).split() == ["changed"]
    assert not (unit_dir(env) / "shop-b@.service").exists()
    assert not (unit_dir(env) / f"{TARGET}.wants" / "shop-b@1.service").exists()


def test_an_environment_file_changed_in_the_inventory_is_written(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    calls(env)
    assert installed(app, env, env_files=(env_file("a.env", "new"),)).split() == ["changed"]
    assert "TOKEN='new'" in (env_dir(env) / "a.env").read_text()
    assert not any("daemon-reload" in c for c in calls(env))
    assert installed(app, env, env_files=(env_file("a.env", "new"),)) == ""


def test_an_environment_file_written_on_the_host_is_put_back(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    (env_dir(env) / "a.env").write_text("TOKEN=by-hand\n")
    assert installed(app, env).split() == ["changed"]
    assert "s3cr3t" in (env_dir(env) / "a.env").read_text()


def test_an_environment_file_replaced_by_the_same_content_is_synced_once(app: App, env: dict[str, str]) -> None:
    installed(app, env)
    path = env_dir(env) / "a.env"
    content = path.read_text()
    path.unlink()
    path.write_text(content)  # another inode: the record no longer vouches for it
    path.chmod(0o600)
    calls(env)
    assert installed(app, env) == ""  # compared, found the same: not changed
    assert calls(env)
    assert installed(app, env) == "" and calls(env) == []  # the record was renewed


def test_an_environment_file_too_many_is_removed(app: App, env: dict[str, str]) -> None:
    installed(app, env, env_files=(env_file("a.env"), env_file("b.env")))
    assert installed(app, env).split() == ["changed"]
    assert sorted(p.name for p in env_dir(env).glob("*.env")) == ["a.env"]
    calls(env)
    assert installed(app, env) == "" and calls(env) == []


def test_without_environment_files(app: App, env: dict[str, str]) -> None:
    installed(app, env, env_files=())
    calls(env)
    assert installed(app, env, env_files=()) == "" and calls(env) == []


def test_the_check_runs_no_sudo_and_no_systemctl_in_system_mode() -> None:
    system = App.model_validate({"name": "shop", "source": {"repository": "/x"}, "deploy_to": "/srv/shop"})
    check = unchanged(system, FILES, WANTED, TARGET, [EnvFile("/etc/deploytool/shop/a.env", "A=1\n")])
    assert check is not None
    assert "sudo" not in check and "systemctl" not in check
    assert '[ -L "$d"/default.target.wants/shop-workers.target ]' in check
    assert "A=1" not in check  # a checksum of the file, never its content


def test_links_come_from_the_install_sections() -> None:
    files = [("shop-a@.service", "[Install]\nWantedBy=shop-workers.target other.target\nRequiredBy=x.target\n"),
             (TARGET, "[Install]\n# comment\nWantedBy=multi-user.target\n")]
    assert enablement_links(files, ["shop-a@1.service"], TARGET) == [
        f"multi-user.target.wants/{TARGET}", f"{TARGET}.wants/shop-a@1.service",
        "other.target.wants/shop-a@1.service", "x.target.requires/shop-a@1.service"]


def test_an_install_section_it_cannot_read_always_syncs(app: App) -> None:
    files = [("shop-a@.service", "[Install]\nWantedBy=shop-workers.target\nAlias=x.service\n"), TARGET_FILE]
    assert enablement_links(files, ["shop-a@1.service"], TARGET) is None
    assert unchanged(app, files, ["shop-a@1.service"], TARGET) is None
    assert "units_unchanged" not in install(app, files, ["shop-a@1.service"], TARGET)
