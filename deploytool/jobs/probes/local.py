"""Shared by the Python probes that see this host's processes (rq.py, celery.py): sent to the host ahead
of the probe's own source (deploytool.jobs.systems.System.source), so each probe stays one program on
the host's stdin."""


def unit_of(pid):
    """The systemd unit a local process runs in, from its cgroup path (its last `.service` part)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                parts = [p for p in line.strip().split("/") if p.endswith(".service")]
                if parts:
                    return parts[-1]
    except (OSError, TypeError):
        pass
    return None
