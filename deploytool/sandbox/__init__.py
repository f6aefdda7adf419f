"""The sandbox: a local fleet of real hosts (systemd-nspawn, systemd as PID 1, sshd) for the demo and tests.

Modules, one concept each: spec (which hosts), layout (where state lives), network (bridge, netns, veth),
host (the overlay disk and its preparation), cgroup (per-host cgroup subtrees), launcher (the detached
process that boots a host and reboots it), process (finding and waiting for a host's processes),
ssh (client key, known_hosts, ssh argv), fleet (up, down, reboot, wait for ready), run (the executor).
"""

from deploytool.sandbox.fleet import Report, down, reboot, recorded_hosts, up, wait_all, wait_ready
from deploytool.sandbox.layout import CLIENT_KEY, DEPLOY_USER, KNOWN_HOSTS, STATE_DIR
from deploytool.sandbox.spec import SandboxHost, load_hosts, sandbox_host
from deploytool.sandbox.ssh import ssh_argv

__all__ = [
    "CLIENT_KEY",
    "DEPLOY_USER",
    "KNOWN_HOSTS",
    "STATE_DIR",
    "Report",
    "SandboxHost",
    "down",
    "load_hosts",
    "reboot",
    "recorded_hosts",
    "sandbox_host",
    "ssh_argv",
    "up",
    "wait_all",
    "wait_ready",
]
