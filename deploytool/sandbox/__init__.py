"""The sandbox: a local fleet of real hosts (systemd-nspawn, systemd as PID 1, sshd) for the demo and tests.

One concept per module:
  spec      which hosts (name, address, roles), read from an inventory
  layout    where the sandbox keeps its state on the controller
  network   the bridge, and a network namespace with a veth per host
  host      a host's overlay disk and its preparation before first boot
  cgroup    per-host cgroup subtrees
  launcher  the detached process that boots a host, and boots it again on reboot
  process   finding and waiting for a host's processes
  ssh       the client key, known_hosts and ssh argv (through jump hosts too)
  faults    a host behind another (firewall), a small disk: put in place by tests, always taken away
  traces    what of the sandbox exists right now
  fleet     up, down, reboot, wait for ready
  handle    Fleet: ssh to running hosts, for tests and scripts
  run       the one executor of local commands
"""

from deploytool.sandbox.fleet import Report, down, reboot, recorded_hosts, up, wait_all, wait_ready
from deploytool.sandbox.handle import Fleet
from deploytool.sandbox.layout import CLIENT_KEY, DEPLOY_USER, KNOWN_HOSTS, STATE_DIR
from deploytool.sandbox.spec import SandboxHost, load_hosts, sandbox_host
from deploytool.sandbox.ssh import ssh_argv
from deploytool.sandbox.traces import all_traces, host_traces

__all__ = [
    "CLIENT_KEY",
    "DEPLOY_USER",
    "KNOWN_HOSTS",
    "STATE_DIR",
    "Fleet",
    "Report",
    "SandboxHost",
    "all_traces",
    "down",
    "host_traces",
    "load_hosts",
    "reboot",
    "recorded_hosts",
    "sandbox_host",
    "ssh_argv",
    "up",
    "wait_all",
    "wait_ready",
]
