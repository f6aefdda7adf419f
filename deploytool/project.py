"""The user's project: the directory whose `inventories/`, `templates/systemd/` and `fabric.yaml` count.

One rule: the project is the directory of the fabfile that `fab` loaded. `fab` looks for `fabfile.py`
in the working directory and then in each parent, and Invoke reads `fabric.yaml` from that same
directory, so inventories and templates are found beside the configuration that names them, even when
`fab` runs in a subdirectory. Code that runs without a loaded fabfile (a library call) uses the
working directory. Never the install location: deploytool may live in any virtualenv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def project_dir(config: Any = None) -> Path:
    """The project of a task's `c.config`, else the working directory."""
    # Invoke keeps the loaded collection's directory here (Config.set_project_location); a plain
    # attribute of the Config object, not one of its settings, and None when nothing was loaded.
    prefix = getattr(config, "_project_prefix", None) if config is not None else None
    return Path(prefix) if prefix else Path.cwd()


def project_templates(project: Path) -> list[Path]:
    """The project's own `templates/systemd/`, whose files override built-in templates of the same name."""
    candidate = project / "templates" / "systemd"
    return [candidate] if candidate.is_dir() else []
