"""The peak memory of a tool's whole process tree on the controller, sampled from /proc.

The kernel keeps an exact peak RSS per process (wait4's ru_maxrss), but for a tree it only reports the
largest single process, never the sum: N `ssh` processes at once (the floor) or Ansible's N forks would
count as one. Nothing in /proc or getrusage gives a tree's peak sum, so it is sampled: every INTERVAL
the tool's descendants are found from each process's parent (this kernel has no /proc/PID/task/TID/children)
and their resident sizes summed. A process is classified once, when first seen, so a sample reads only
new processes and the tree's members; a peak shorter than INTERVAL can be missed (a lower bound), pages
shared between the tree's processes (libraries, a fork's copy-on-write pages) count once per process,
and a process that detaches before it is first seen (a daemon's double fork) is not counted.
"""

from __future__ import annotations

import os
import threading

INTERVAL = 0.1
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # gone
        return None
    # the command name is in parentheses and may contain anything: the fields follow the last ")"
    return int(stat.rpartition(b")")[2].split()[1])


def _rss_pages(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class TreeMemory(threading.Thread):
    """Samples the summed RSS of `root` and its descendants until stop(); `peak_kib` is the largest sum."""

    def __init__(self, root: int, interval: float = INTERVAL) -> None:
        super().__init__(name=f"treemem-{root}", daemon=True)
        self.root = root
        self.interval = interval
        self.peak_kib = 0
        self._inside: dict[int, bool] = {}  # pid -> in the tree, decided when first seen
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            self.sample()
            if self._done.wait(self.interval):
                return

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak_kib

    def sample(self) -> None:
        pids = {int(e.name) for e in os.scandir("/proc") if e.name.isdigit()}
        known = {p: inside for p, inside in self._inside.items() if p in pids}  # a gone pid may be reused
        new = {p: pp for p in pids - known.keys() if (pp := _parent(p)) is not None}
        members = {p for p, inside in known.items() if inside}
        grew = True
        while grew:  # a child may carry a smaller pid than its parent (pids wrap)
            grew = False
            for p, pp in list(new.items()):
                if p == self.root or pp in members:
                    members.add(p)
                    del new[p]
                    grew = True
        known.update(dict.fromkeys(new, False))
        known.update(dict.fromkeys(members, True))
        self._inside = known
        self.peak_kib = max(self.peak_kib, PAGE_KIB * sum(_rss_pages(p) for p in members))
