"""The sandbox's ssh argv through jump hosts: every hop with the sandbox key and strict known_hosts, and
each hop's `%h`/`%p` reaching the ssh it belongs to."""

from __future__ import annotations

import re
import shlex

from deploytool.sandbox.layout import CLIENT_KEY, KNOWN_HOSTS
from deploytool.sandbox.ssh import ssh_argv

STRICT = ["-i", str(CLIENT_KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
          "-o", "BatchMode=yes"]


def expand(proxy_command: str, host: str, port: int = 22) -> str:
    """What ssh does to a ProxyCommand before running it (the tokens used here)."""
    return re.sub(r"%[%hp]", lambda m: {"%%": "%", "%h": host, "%p": str(port)}[m.group(0)], proxy_command)


def proxy_of(argv: list[str]) -> str | None:
    found = [a.removeprefix("ProxyCommand=") for a in argv if a.startswith("ProxyCommand=")]
    assert len(found) <= 1
    return found[0] if found else None


def assert_strict(argv: list[str]) -> None:
    for i in range(0, len(STRICT), 2):
        pair = STRICT[i:i + 2]
        assert any(argv[j:j + 2] == pair for j in range(len(argv))), (pair, argv)


def test_direct_ssh_has_no_proxy() -> None:
    argv = list(ssh_argv("10.213.0.11", "true"))
    assert proxy_of(argv) is None
    assert argv[-3:] == ["deploy@10.213.0.11", "--", "true"]


def test_a_chain_of_two_jumps_checks_every_hop() -> None:
    """target 10.213.0.11 through .21 then .22: ssh runs the ProxyCommand for the target, which is an
    ssh to .22 whose own ProxyCommand is an ssh to .21; each ssh is strict, and each `-W` names the hop
    after it once ssh has expanded the tokens."""
    outer = list(ssh_argv("10.213.0.11", "true", jumps=["10.213.0.21", "10.213.0.22"]))
    assert_strict(outer)
    assert outer[-3] == "deploy@10.213.0.11"

    to_second = shlex.split(expand(proxy_of(outer) or "", "10.213.0.11"))
    assert_strict(to_second)
    assert to_second[-3:] == ["-W", "[10.213.0.11]:22", "deploy@10.213.0.22"]

    to_first = shlex.split(expand(proxy_of(to_second) or "", "10.213.0.22"))
    assert_strict(to_first)
    assert to_first[-3:] == ["-W", "[10.213.0.22]:22", "deploy@10.213.0.21"]
    assert proxy_of(to_first) is None
