"""Procfiles (foreman, honcho, Heroku): a worker group's command taken from the app's own Procfile.

A Procfile holds one process type per line, `name: command`; every other line (comments, blank lines)
is ignored, as foreman and honcho ignore them. foreman runs a command through a shell with `PORT` set
to base port (5000) + 100 * the process type's index in the file + the instance's index (from 0);
honcho does the same. Units carry the real argv instead, so a command is split into words here the way
a POSIX shell splits it (quotes, backslashes, `#` comments), `$PORT` / `${PORT}` are replaced by the
port foreman would give the first instance, and leading `NAME=value` assignments become
`/usr/bin/env NAME=value ...`. What only a shell could do at start (other variables, pipes, `&&`,
redirections, command substitution, `~`) is refused with the reason rather than guessed.

deploytool.procfile_groups fills the `command` of an inventory's `procfile:` groups from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FILE = "Procfile"
# honcho's line pattern (foreman's is the same without `-` in the name).
LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
BASE_PORT = 5000
PORT_STEP = 100  # between process types, as foreman and honcho space them
ENV = "/usr/bin/env"

_OPERATORS = frozenset("|&;<>()`")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")


@dataclass(frozen=True)
class Entry:
    name: str
    command: str
    index: int  # position among the process types, from 0: what PORT is computed from

    @property
    def port(self) -> int:
        """The PORT foreman gives this process type's first instance (base port 5000)."""
        return BASE_PORT + PORT_STEP * self.index


def parse(text: str) -> list[Entry]:
    """The process types of a Procfile, in file order (duplicates kept: `find` refuses them)."""
    lines = text.replace("\r\n", "\n").split("\n")
    matches = [m for m in (LINE.match(line) for line in lines) if m]
    return [Entry(m.group(1), m.group(2).strip(), i) for i, m in enumerate(matches)]


def find(entries: list[Entry], name: str) -> Entry:
    """The entry of process type `name`; ValueError if there is none or more than one."""
    found = [e for e in entries if e.name == name]
    if not found:
        known = ", ".join(e.name for e in entries) or "none"
        raise ValueError(f"no process type {name!r} (it has: {known})")
    if len(found) > 1:
        raise ValueError(f"process type {name!r} is defined {len(found)} times")
    return found[0]


@dataclass
class _Word:
    text: str = ""
    started: bool = False  # quotes make a word even when empty (`''`)
    quoted_from: int | None = None  # where the first quoted or escaped character of the word is
    uses_port: bool = False

    def add(self, text: str, quoted: bool) -> None:
        if quoted and self.quoted_from is None:
            self.quoted_from = len(self.text)
        self.text += text
        self.started = True


@dataclass(frozen=True)
class Command:
    """A Procfile command as data: the leading assignments and the argv, PORT already replaced."""

    environment: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]
    uses_port: bool

    def exec_argv(self) -> list[str]:
        """What a unit's ExecStart runs: the argv, behind `env NAME=value` when the line sets variables."""
        if not self.environment:
            return list(self.argv)
        return [ENV, *(f"{k}={v}" for k, v in self.environment), *self.argv]


def _variable(line: str, i: int, port: int, word: _Word, quoted: bool) -> int:
    """Expand the `$...` at line[i]; the index after it."""
    rest = line[i + 1:]
    m = re.match(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", rest) or _NAME.match(rest)
    if m is None:
        if rest[:1] in ("", " ", "\t", '"') or (not quoted and rest[:1] == "'"):
            word.add("$", quoted)  # a lone `$` is literal to a shell too
            return i + 1
        raise ValueError(f"`${rest[:1]}` needs a shell; deploytool expands only $PORT")
    name = m.group(1) if m.group(0).startswith("{") else m.group(0)
    if name != "PORT":
        raise ValueError(f"`${name}` needs a shell to expand it at start; deploytool expands only $PORT "
                         "(set the value in the Procfile, or give the group its own `command:`)")
    word.add(str(port), quoted)
    word.uses_port = True
    return i + 1 + len(m.group(0))


def words(line: str, port: int) -> list[_Word]:
    """`line` split into words as a POSIX shell splits it, `$PORT` replaced; ValueError for what only a
    shell can do."""
    out: list[_Word] = []
    word = _Word()
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F:
            raise ValueError(f"a control character ({c!r}) cannot be part of a unit's command")
        if c in " \t":
            if word.started:
                out.append(word)
                word = _Word()
            i += 1
        elif c == "#" and not word.started:
            break  # a comment runs to the end of the line
        elif c in _OPERATORS:
            raise ValueError(f"`{c}` needs a shell (pipes, lists, redirections and substitutions are not "
                             "run by deploytool: put them in a script the Procfile runs)")
        elif c == "~" and not word.started:
            raise ValueError("`~` needs a shell to expand it: write the path in full")
        elif c == "\\":
            if i + 1 >= n:
                raise ValueError("a `\\` ends the line")
            word.add(line[i + 1], quoted=True)
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ValueError("a `'` is not closed")
            word.add(line[i + 1:end], quoted=True)
            i = end + 1
        elif c == '"':
            i = _double_quoted(line, i + 1, port, word)
        elif c == "$":
            i = _variable(line, i, port, word, quoted=False)
        else:
            word.add(c, quoted=False)
            i += 1
    if word.started:
        out.append(word)
    return out


def _double_quoted(line: str, i: int, port: int, word: _Word) -> int:
    word.add("", quoted=True)
    while i < len(line):
        c = line[i]
        if c == '"':
            return i + 1
        if c == "\\" and i + 1 < len(line) and line[i + 1] in '$`"\\':
            word.add(line[i + 1], quoted=True)
            i += 2
        elif c == "`":
            raise ValueError("`` ` `` needs a shell (command substitution)")
        elif c == "$":
            i = _variable(line, i, port, word, quoted=True)
        else:
            word.add(c, quoted=True)
            i += 1
    raise ValueError('a `"` is not closed')


def command(entry: Entry) -> Command:
    """The entry's command as argv (PORT of its first instance); ValueError naming what cannot be run
    without a shell."""
    ws = words(entry.command, entry.port)
    environment = []
    while ws:
        m = _ASSIGNMENT.match(ws[0].text)
        # Only an unquoted `NAME=` is an assignment (`'A=b' cmd` runs a program named A=b).
        if m is None or (ws[0].quoted_from is not None and ws[0].quoted_from < m.end()):
            break
        environment.append((m.group(1), ws[0].text[m.end():]))
        ws.pop(0)
    if ws and ws[0].text == "exec" and ws[0].quoted_from is None:
        ws.pop(0)  # `exec cmd` replaces the shell with cmd: the same process a unit starts
    if not ws:
        raise ValueError("the command is empty")
    return Command(tuple(environment), tuple(w.text for w in ws), any(w.uses_port for w in ws))
