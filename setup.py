"""Builds deploytool with its built-in unit templates inside the package.

The templates' source is the top-level templates/systemd/ (where a reader looks for them); a wheel must
carry them, so the build copies them to deploytool/templates/systemd/. A copy rather than a symlink in
the package: a symlink is lost by tools that copy a tree without following links, and the wheel then
has no templates at all. All other settings are in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "templates" / "systemd"


class BuildWithTemplates(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "deploytool" / "templates" / "systemd"
        target.mkdir(parents=True, exist_ok=True)
        for template in sorted(SOURCE.glob("*.j2")):
            (target / template.name).write_bytes(template.read_bytes())


setup(cmdclass={"build_py": BuildWithTemplates})
