"""What of the sandbox exists on this machine right now: the checklist behind "down leaves nothing".

Each trace is one readable line ("netns dt-prod-a", "mount /var/lib/..."), so a test failure or a
report says exactly what was left behind.
"""

from __future__ import annotations

from pathlib import Path

from deploytool.sandbox import cgroup, network, process
from deploytool.sandbox.layout import HOSTS_DIR, STATE_DIR


def _mounts_under(prefix: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts]
    return [t for t in targets if t == str(prefix) or t.startswith(f"{prefix}/")]


def _sandbox_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = process.cmdline(pid)
        if process.LAUNCHER_MODULE in argv or (
            process.comm(pid) == "systemd-nspawn" and any(str(HOSTS_DIR) in a for a in argv)
        ):
            found.append(f"process {pid} {' '.join(argv)[:100]}")
    return found


def host_traces(name: str) -> list[str]:
    """Traces of one host: its processes, mount, namespace, cgroup dirs and state dir."""
    found = [f"process {pid} in cgroup of {name}" for pid in sorted(cgroup.pids(name))]
    found += [f"mount {m}" for m in _mounts_under(HOSTS_DIR / name)]
    if network.netns_path(name).exists():
        found.append(f"netns {network.netns_name(name)}")
    found += [f"cgroup {d}" for d in cgroup.host_dirs(name) if d.exists()]
    if (HOSTS_DIR / name).exists():
        found.append(f"state {HOSTS_DIR / name}")
    return found


def all_traces() -> list[str]:
    """Everything of the sandbox on this machine; empty after a successful `down`."""
    found = _sandbox_processes()
    found += [f"mount {m}" for m in _mounts_under(STATE_DIR)]
    found += [f"netns {network.netns_name(n)}" for n in network.sandbox_namespaces()]
    found += [f"link {link}" for link in network.sandbox_links()]
    found += [f"cgroup {h / cgroup.PARENT}" for h in cgroup.HIERARCHIES if (h / cgroup.PARENT).exists()]
    if STATE_DIR.exists():
        found.append(f"state {STATE_DIR}")
    return found
