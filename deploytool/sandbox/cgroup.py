"""Per-host cgroup subtrees.

This machine runs no systemd of its own. systemd-nspawn started from the root cgroup puts every host
under one shared `/payload` tree, so the same unit on two hosts would be one cgroup and `systemctl stop`
would leave a worker's children running. So each host's launcher first moves itself into a cgroup of
its own, in both hierarchies systemd inside the host uses (cgroup2 `unified` and v1 `name=systemd`).
"""

from __future__ import annotations

import os
from pathlib import Path

HIERARCHIES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
PARENT = "deploytool-sandbox"


def host_dirs(host_name: str) -> list[Path]:
    return [h / PARENT / host_name for h in HIERARCHIES]


def join(host_name: str, pid: int) -> None:
    """Create the host's cgroups and move pid into them (its children are born there)."""
    for d in host_dirs(host_name):
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.procs").write_text(f"{pid}\n")


def pids(host_name: str) -> set[int]:
    """Every process in the host's subtree: launcher, systemd-nspawn and the whole host."""
    found: set[int] = set()
    for d in host_dirs(host_name):
        for dirpath, _dirs, files in os.walk(d):
            if "cgroup.procs" in files:
                try:
                    text = (Path(dirpath) / "cgroup.procs").read_text()
                except OSError:  # the cgroup went away while walking
                    continue
                found.update(int(p) for p in text.split())
    return found


def remove(host_name: str) -> None:
    """rmdir the host's cgroup dirs bottom-up (cgroupfs only lets empty leaves go)."""
    for d in host_dirs(host_name):
        if not d.exists():
            continue
        for dirpath, _dirs, _files in os.walk(d, topdown=False):
            Path(dirpath).rmdir()


def remove_parent() -> None:
    """rmdir the sandbox's parent cgroups once no host is left under them."""
    for h in HIERARCHIES:
        parent = h / PARENT
        if parent.exists() and not any(p.is_dir() for p in parent.iterdir()):
            parent.rmdir()


def host_names() -> set[str]:
    """Hosts that have a cgroup dir, e.g. left over by a crashed run."""
    names: set[str] = set()
    for h in HIERARCHIES:
        parent = h / PARENT
        if parent.exists():
            names.update(p.name for p in parent.iterdir() if p.is_dir())
    return names
