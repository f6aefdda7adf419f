"""The two failures every task distinguishes: bad input (exit 2) and a failed host (exit 1)."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: an inventory, option or template that cannot be used. Nothing was touched.

    The message is one line naming the file, host/app/group and key.
    """

    exit_code = 2


class HostError(Exception):
    """A step failed on a host. The message names the host, stage and command."""

    exit_code = 1
