"""The services a sandbox host runs for its roles: Redis (role `redis`) and RabbitMQ (role `rabbitmq`).

Every package is installed on the controller, so every host has every service's files; the controller's
enabled services are masked on each host (host.units_to_mask) except those of the host's own roles,
which are configured here before the host's first boot to listen on its sandbox address.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploytool.sandbox.layout import DEPLOY_USER, HostPaths
from deploytool.sandbox.spec import SandboxHost

REDIS_ROLE = "redis"
RABBITMQ_ROLE = "rabbitmq"

# The sample app's RabbitMQ user and vhost: `guest` may only connect from the broker's own loopback.
RABBITMQ_USER = "sample"
RABBITMQ_VHOST = "sample"
RABBITMQ_PORT = 5672

REDIS_CONF = """
# deploytool sandbox: serve the other sandbox hosts on this host's own address (last `bind` wins).
bind {address} 127.0.0.1
protected-mode no
"""

RABBITMQ_CONF = """\
# deploytool sandbox: serve the other sandbox hosts on this host's own address, and the local CLI tools.
listeners.tcp.1 = {address}:{port}
listeners.tcp.2 = 127.0.0.1:{port}
# The sample app's user, vhost and permissions, imported at every boot.
load_definitions = /etc/rabbitmq/definitions.json
"""

# Erlang's schedulers spin while idle by default: on a machine whose two cores run a whole fleet, that
# spinning is CPU the workers and tests need.
RABBITMQ_ENV = """\
# deploytool sandbox
SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
"""

# The deploy user may ask the broker how it is (the sandbox waits for it) and what its queues hold.
RABBITMQ_SUDOERS = f"""\
# deploytool sandbox: RabbitMQ's CLI tools run only as root or rabbitmq.
{DEPLOY_USER} ALL=(root) NOPASSWD: /usr/sbin/rabbitmq-diagnostics, /usr/sbin/rabbitmqctl
"""


@dataclass(frozen=True)
class Service:
    role: str
    # Units the controller enables that stay unmasked on hosts with the role.
    units: tuple[str, ...]
    # Writes the service's configuration into a host's root before its first boot.
    configure: Callable[[Path, SandboxHost], None]
    # A command (as the deploy user) that succeeds once the service serves clients; None: the host's
    # own boot (systemctl is-system-running --wait) is proof enough.
    ready: str | None = None


def _write(path: Path, text: str, mode: int = 0o644, gid: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, 0, gid)


def _gid(root: Path, group: str) -> int:
    # The host's /etc/group is the controller's (an overlay), so names map to the same ids.
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    raise LookupError(f"group {group} not in {root}/etc/group")


def _configure_redis(root: Path, host: SandboxHost) -> None:
    with (root / "etc/redis/redis.conf").open("a") as conf:
        conf.write(REDIS_CONF.format(address=host.address))


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(password: str) -> str:
    return json.dumps({
        "users": [{"name": RABBITMQ_USER, "password_hash": password_hash(password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
        "vhosts": [{"name": RABBITMQ_VHOST}],
        "permissions": [{"user": RABBITMQ_USER, "vhost": RABBITMQ_VHOST,
                         "configure": ".*", "write": ".*", "read": ".*"}],
    }, indent=2) + "\n"


def amqp_url_file(host_name: str) -> Path:
    """The sample user's URL, password included: in the host's state dir on the controller (root only,
    never on a host's disk), removed with the host."""
    return HostPaths(host_name).base / "amqp.url"


def amqp_url(host_name: str) -> str:
    """`amqp://sample:PASSWORD@ADDRESS:5672/sample` for a running RabbitMQ host of the sandbox."""
    return amqp_url_file(host_name).read_text().strip()


def _configure_rabbitmq(root: Path, host: SandboxHost) -> None:
    password = secrets.token_urlsafe(18)
    url_file = amqp_url_file(host.name)
    url_file.touch(mode=0o600)
    url_file.write_text(f"amqp://{RABBITMQ_USER}:{password}@{host.address}:{RABBITMQ_PORT}/{RABBITMQ_VHOST}\n")
    etc = root / "etc/rabbitmq"
    _write(etc / "rabbitmq.conf", RABBITMQ_CONF.format(address=host.address, port=RABBITMQ_PORT))
    _write(etc / "rabbitmq-env.conf", RABBITMQ_ENV)
    # Readable by the broker (group rabbitmq) and root only: it holds the password's hash.
    _write(etc / "definitions.json", definitions(password), 0o640, _gid(root, "rabbitmq"))
    _write(root / "etc/sudoers.d/deploytool-sandbox-rabbitmq", RABBITMQ_SUDOERS, 0o440)


SERVICES = (
    Service(REDIS_ROLE, ("redis-server.service",), _configure_redis),
    # rabbitmq-server starts epmd (Erlang's port mapper) itself when its socket unit is masked, but a
    # host that has the role runs it as Debian sets it up.
    Service(RABBITMQ_ROLE, ("rabbitmq-server.service", "epmd.service", "epmd.socket"), _configure_rabbitmq,
            # The listeners accept AMQP connections (which implies the node and its app are running).
            ready="sudo -n rabbitmq-diagnostics -q check_port_connectivity"),
)


def kept_units(host: SandboxHost) -> set[str]:
    """Units of the host's roles: not masked on this host."""
    return {u for s in SERVICES if s.role in host.roles for u in s.units}


def of(host: SandboxHost) -> list[Service]:
    return [s for s in SERVICES if s.role in host.roles]


def configure(root: Path, host: SandboxHost) -> None:
    for service in SERVICES:
        if service.role in host.roles:
            service.configure(root, host)
