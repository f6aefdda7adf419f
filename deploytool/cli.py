"""The `deploytool` command: `--version` and `init`. Deploys and workers are `fab` tasks."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from deploytool.errors import InputError
from deploytool.init import init


def version() -> str:
    return metadata.version("deploytool")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deploytool",
        description="Capistrano-style releases and systemd-managed workers, on Fabric. "
                    "Run `deploytool init` in an app's repository, then `fab --list` there.",
    )
    p.add_argument("--version", action="version", version=f"deploytool {version()}")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    i = commands.add_parser("init", help="write fabfile.py, fabric.yaml, inventories/production.yml and a CI "
                                         "pipeline into the project")
    i.add_argument("directory", nargs="?", default=".", help="the app's repository (default: the current directory)")
    i.add_argument("--force", action="store_true", help="replace files that already exist")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command != "init":
        p.print_help(sys.stderr)
        return 2
    project = Path(args.directory)
    if not project.is_dir():
        print(f"error: {project}: no such directory", file=sys.stderr)
        return 2
    try:
        written = init(project, force=args.force)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    for w in written:
        print(f"updated {w.path} ({w.what})" if w.what else f"{'replaced' if w.replaced else 'wrote'} {w.path}")
    print("next: edit inventories/production.yml, then `fab inventory.check` and `fab deploy`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
