"""The peak memory of a tool's whole process tree on the controller, sampled from /proc.

getrusage and wait4 cannot give it. Their ru_maxrss is a maximum over single processes, never a sum: N
`ssh` processes at once (the floor) or Ansible's N forks would count as one. And a child's ru_maxrss
includes its parent's resident size when it was spawned: until exec the child shares or copies the
parent's memory, and at exec the kernel keeps that memory's high-water mark as the process's own (a
`true` spawned by a 200 MiB Python reports 211 MiB). Measured that way, every tool "uses" at least what
the benchmark itself does.

So it is sampled: every INTERVAL the tool's descendants are found from each process's parent (this kernel
has no /proc/PID/task/TID/children) and their resident sizes (VmRSS) summed; each member's own exact peak
(VmHWM, kept by the kernel since its exec) is read too. A process is classified once, when first seen, so
a sample reads only new processes and the tree's members. Limits: a peak of the sum shorter than INTERVAL
can be missed (the largest single process's VmHWM bounds it from below), pages shared between the tree's
processes (libraries, a fork's copy-on-write pages) count once per process, and a process that detaches
before it is first seen (a daemon's double fork) is not counted.
"""

from __future__ import annotations

import os
import threading

INTERVAL = 0.1


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # gone
        return None
    # the command name is in parentheses and may contain anything: the fields follow the last ")"
    return int(stat.rpartition(b")")[2].split()[1])


def _rss_hwm_kib(pid: int) -> tuple[int, int]:
    """The process's resident size now and its peak since exec, in KiB (0, 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        return int(fields[b"VmRSS"].split()[0]), int(fields[b"VmHWM"].split()[0])
    except (OSError, KeyError, IndexError, ValueError):  # gone, or a zombie (no Vm* lines)
        return 0, 0


class TreeMemory(threading.Thread):
    """Samples `root` and its descendants until stop(): `peak_kib` is the largest sum of their RSS, never
    less than `largest_kib`, the largest peak RSS (VmHWM) of any one of them."""

    def __init__(self, root: int, interval: float = INTERVAL) -> None:
        super().__init__(name=f"treemem-{root}", daemon=True)
        self.root = root
        self.interval = interval
        self.peak_kib = 0
        self.largest_kib = 0
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
        self.peak_kib = max(self.peak_kib, self.largest_kib)
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
        sizes = [_rss_hwm_kib(p) for p in members]
        self.peak_kib = max(self.peak_kib, sum(rss for rss, _ in sizes))
        self.largest_kib = max([self.largest_kib, *(hwm for _, hwm in sizes)])
