"""Commands that put a linked file into an app's shared/: read its state, make a private temporary file
beside it, and move the uploaded content over it atomically. Pure builders returning argv; the content
itself never appears in them (it travels as an upload)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploytool.inventory import App

q = shlex.quote

MODE = "600"  # linked files hold secrets: readable by their owner only
ABSENT = "absent"


@dataclass(frozen=True)
class SharedFile:
    """One linked file of an app in shared/, owned by `owner`, the user the workers run as.

    When that is not the SSH user, the SSH user can neither read the file nor give it away: `checksum`
    then reads it as the owner (in the workers' runtime context, deploytool.context) and the owner is
    set by `sudo install`, both rights the deploy user has for other reasons (docs/security.md)."""

    app: App
    name: str  # as in linked_files: relative to the release (and to shared/)
    owner: str
    checksum: tuple[str, ...] = ()  # argv printing the file's sha256; () = plain sha256sum

    @property
    def path(self) -> str:
        return f"{self.app.shared_path}/{self.name}"

    @property
    def directory(self) -> str:
        return str(PurePosixPath(self.path).parent)

    @property
    def other_owner(self) -> bool:
        return bool(self.checksum)


def invocation(app: App, name: str, source: str = "PATH") -> str:
    """The task that puts this linked file in place: what a missing-file error tells the user to run."""
    return shlex.join(["fab", "config.upload", "--app", app.name, "--file", name, "--from", source])


def state(f: SharedFile) -> str:
    """Print `SHA256 MODE OWNER` of the file, or `absent`."""
    sha = shlex.join(f.checksum or ("sha256sum", "--", f.path))
    path = q(f.path)
    return (f"if [ -e {path} ]; then printf '%s %s\\n' \"$({sha} | cut -d' ' -f1)\" "
            f"\"$(stat -c '%a %U' -- {path})\"; else echo {ABSENT}; fi")


def expected_state(f: SharedFile, sha256: str) -> str:
    """The line `state` prints when the file already is as wanted."""
    return f"{sha256} {MODE} {f.owner}"


def make_temp(f: SharedFile) -> str:
    """A private temporary file (mktemp makes it 0600) in the same directory, so the final `mv` is a
    rename; prints its path. The directory keeps the usual mode: the workers' user must reach the file."""
    return f"mkdir -p -- {q(f.directory)} && mktemp -- {q(temp_template(f))}"


def temp_template(f: SharedFile) -> str:
    """mktemp's template for the temporary file: hidden, beside the file, named for it."""
    return f"{f.directory}/.{PurePosixPath(f.name).name}.deploytool.XXXXXXXX"


def install(f: SharedFile, temp: str) -> list[list[str]]:
    """Mode and owner first, then a rename over the old file: readers see the old file or the new one."""
    if not f.other_owner:
        return [["chmod", MODE, "--", temp], ["mv", "-f", "--", temp, f.path]]
    owned = owned_temp(temp)
    return [
        ["sudo", "-n", "install", "-m", MODE, "-o", f.owner, "--", temp, owned],
        ["rm", "-f", "--", temp],
        ["mv", "-f", "--", owned, f.path],
    ]


def owned_temp(temp: str) -> str:
    return f"{temp}.owned"


def discard(temp: str) -> list[str]:
    return ["rm", "-f", "--", temp, owned_temp(temp)]
