"""The sandbox's role services: which units stay unmasked where, and RabbitMQ's definitions."""

from __future__ import annotations

import base64
import hashlib
import json

from deploytool.sandbox import services
from deploytool.sandbox.spec import SandboxHost

REDIS = SandboxHost("redis-a", "10.213.0.21", ("redis",))
RABBIT = SandboxHost("rabbit-a", "10.213.0.22", ("rabbitmq",))
APP = SandboxHost("prod-a", "10.213.0.11", ("app", "worker"))


def test_each_role_keeps_only_its_own_services() -> None:
    assert services.kept_units(REDIS) == {"redis-server.service"}
    assert services.kept_units(RABBIT) == {"rabbitmq-server.service", "epmd.service", "epmd.socket"}
    assert services.kept_units(APP) == set()
    assert [s.role for s in services.of(SandboxHost("both", "10.213.0.30", ("rabbitmq", "redis")))] == [
        "redis", "rabbitmq"]


def test_password_hash_is_rabbitmq_sha256_with_its_salt() -> None:
    encoded = services.password_hash("s3cret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(encoded)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()
    assert services.password_hash("s3cret") != services.password_hash("s3cret")  # a fresh salt each time


def test_definitions_hold_a_hash_never_the_password() -> None:
    text = services.definitions("pw-not-to-be-seen")
    assert "pw-not-to-be-seen" not in text
    data = json.loads(text)
    assert [u["name"] for u in data["users"]] == ["sample"]
    assert data["vhosts"] == [{"name": "sample"}]
    assert data["permissions"][0]["vhost"] == "sample"


def test_rabbitmq_listens_on_its_own_address_and_loopback() -> None:
    conf = services.RABBITMQ_CONF.format(address=RABBIT.address, port=services.RABBITMQ_PORT)
    assert "listeners.tcp.1 = 10.213.0.22:5672" in conf and "listeners.tcp.2 = 127.0.0.1:5672" in conf
