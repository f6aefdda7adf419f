"""Where deploytool looks for a project's files: inventories/, templates/systemd/ and fabric.yaml are
the project's (the directory of the fabfile `fab` loaded), never deploytool's own checkout or install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from invoke.config import Config

from deploytool.errors import InputError
from deploytool.inventory import resolve_path
from deploytool.project import project_dir, project_templates
from deploytool.units import BUILTIN_TEMPLATES

REPO = Path(__file__).resolve().parents[2]
FAB = REPO / ".venv" / "bin" / "fab"
BASIC = Path(__file__).resolve().parent / "inventories" / "basic.yml"
# A line only the project's own target template has.
OVERRIDE = "# rendered from the project's own template"


def fab(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No -r: `fab` finds the fabfile from the working directory, as a user runs it.
    return subprocess.run([str(FAB), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An app's repository: fabfile.py, fabric.yaml naming the `stage` inventory, a template override."""
    root = tmp_path / "shop"
    (root / "inventories").mkdir(parents=True)
    (root / "fabfile.py").write_text("from deploytool.tasks import ns\n\n__all__ = ['ns']\n")
    (root / "fabric.yaml").write_text("deploytool:\n  inventory: stage\n")
    shutil.copy(BASIC, root / "inventories" / "stage.yml")
    templates = root / "templates" / "systemd"
    templates.mkdir(parents=True)
    builtin = (BUILTIN_TEMPLATES / "workers.target.j2").read_text()
    (templates / "workers.target.j2").write_text(f"{OVERRIDE}\n{builtin}")
    (root / "deep" / "er").mkdir(parents=True)
    return root


def test_inventory_name_and_fabric_yaml_come_from_the_project(project: Path) -> None:
    # From a subdirectory: fab finds the fabfile upwards; fabric.yaml and inventories/ are beside it.
    r = fab(project / "deep" / "er", "inventory.check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"inventory {project / 'inventories' / 'stage.yml'}: ok")


def test_a_name_is_never_looked_up_in_deploytools_own_inventories(project: Path) -> None:
    assert (REPO / "inventories" / "sandbox.yml").exists()
    r = fab(project, "inventory.check", "--inventory", "sandbox")
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: inventory 'sandbox': no {project / 'inventories'}/sandbox.yml "
                                "nor directory")


def test_templates_are_overridden_from_the_project(project: Path) -> None:
    r = fab(project / "deep", "workers.render", "--host", "worker-1")
    assert r.returncode == 0, r.stderr
    targets = r.stdout.split("# --- worker-1: ")
    target = next(t for t in targets if t.startswith("shop-workers.target"))
    assert OVERRIDE in target
    # Only the overridden file: the worker units still come from the built-in template.
    assert OVERRIDE not in next(t for t in targets if t.startswith("shop-jobs@.service"))


def test_project_dir_is_invokes_project_location_else_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Config()
    config.set_project_location(str(tmp_path / "app"))
    assert project_dir(config) == tmp_path / "app"
    monkeypatch.chdir(tmp_path)
    assert project_dir(Config()) == tmp_path
    assert project_dir() == tmp_path


def test_resolve_path_looks_in_the_project_then_takes_paths_as_given(project: Path) -> None:
    assert resolve_path("stage", project) == project / "inventories" / "stage.yml"
    layered = project / "inventories" / "layered"
    layered.mkdir()
    assert resolve_path("layered", project) == layered
    assert resolve_path(str(BASIC), project) == BASIC
    with pytest.raises(InputError, match=r"inventory 'nope': no .*/shop/inventories/nope\.yml nor directory$"):
        resolve_path("nope", project)


def test_project_templates_only_when_the_project_has_them(project: Path, tmp_path: Path) -> None:
    assert project_templates(project) == [project / "templates" / "systemd"]
    assert project_templates(tmp_path) == []


def test_builtin_templates_are_package_data_with_the_top_level_source() -> None:
    # A checkout reads the top-level source; a wheel carries copies in the package (test_wheel.py).
    assert BUILTIN_TEMPLATES == REPO / "templates" / "systemd"
    for source in (REPO / "templates" / "systemd").glob("*.j2"):
        assert (BUILTIN_TEMPLATES / source.name).read_text() == source.read_text()
