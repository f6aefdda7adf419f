"""Writing values into systemd unit files so that systemd reads back exactly what was meant.

systemd reads a unit line in three passes, and each needs its own escape:
1. specifiers: `%i`, `%h`, ... are expanded everywhere, so a literal `%` is written `%%`;
2. words (ExecStart=, Environment=): split on whitespace, with "double quotes" and C escapes
   (`\\"`, `\\\\`, `\\t`, `\\xNN`) undone; an unquoted lone `;` separates commands;
3. ExecStart= only: `$VAR` / `${VAR}` are replaced from the environment, `$$` is a literal `$`.

Values come from a validated inventory, which already refuses newlines and NUL; they are refused here
too (ValueError), because one would end the line and smuggle in a directive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Characters that make an ExecStart word need quotes: separators, quotes, escapes, and `;` (only a
# lone `;` is a separator, but quoting every `;` keeps the rule simple to review).
_NEEDS_QUOTES = frozenset(" \t\"'\\;")
# Prefixes systemd strips from the first word of ExecStart= (`-` ignore failure, `@` argv0, ...).
_EXEC_PREFIXES = "@-:+!|"
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\v": "\\v", "\f": "\\f", "\a": "\\a", "\b": "\\b"}


@dataclass(frozen=True)
class Spec:
    """One systemd specifier written unescaped, e.g. Spec("i") → `%i` (the instance name)."""

    letter: str

    def __post_init__(self) -> None:
        if len(self.letter) != 1 or not self.letter.isalpha():
            raise ValueError(f"not a systemd specifier letter: {self.letter!r}")


INSTANCE = Spec("i")


@dataclass(frozen=True)
class Specifier:
    """One argument mixing literal text with systemd specifiers, e.g. `sample-celery-%i@prod-a`.

    Literal parts are escaped when written; `Spec` parts are written as `%x` for systemd to fill in.
    """

    parts: tuple[str | Spec, ...]

    def expand(self, values: Mapping[str, str]) -> str:
        """The argument as the process will see it, given specifier values ({"i": "1"})."""
        return "".join(p if isinstance(p, str) else values[p.letter] for p in self.parts)

    def __str__(self) -> str:
        # Readable form for plans and logs (not unit syntax: literal `%` stays single).
        return "".join(p if isinstance(p, str) else f"%{p.letter}" for p in self.parts)


Arg = str | Specifier


def _refuse_line_breaks(text: str) -> None:
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"a newline or NUL cannot be written into a unit file: {text!r}")


def escape_specifiers(text: str) -> str:
    """A literal value for a directive taken verbatim (Description=, WorkingDirectory=, paths)."""
    _refuse_line_breaks(text)
    return text.replace("%", "%%")


def setting_value(text: str) -> str:
    """A value for a setting that takes its text verbatim, without specifiers (CPUQuota=150%)."""
    _refuse_line_breaks(text)
    return text


def _c_escape(text: str) -> str:
    out = []
    for ch in text:
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _needs_quotes(text: str) -> bool:
    return any(ch in _NEEDS_QUOTES or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _escape(parts: Sequence[str | Spec], *, expand_dollar: bool) -> str:
    # Escaped text, to be placed inside double quotes (or bare, if `_needs_quotes` says it may).
    _refuse_line_breaks("".join(p for p in parts if isinstance(p, str)))
    written = []
    for part in parts:
        if isinstance(part, Spec):
            written.append(f"%{part.letter}")
            continue
        text = part.replace("%", "%%")
        if expand_dollar:
            text = text.replace("$", "$$")
        written.append(_c_escape(text))
    return "".join(written)


def exec_arg(arg: Arg) -> str:
    """One ExecStart= argument, quoted and escaped as needed."""
    parts = arg.parts if isinstance(arg, Specifier) else (arg,)
    body = _escape(parts, expand_dollar=True)
    literal = "".join(p for p in parts if isinstance(p, str))
    return f'"{body}"' if _needs_quotes(literal) or not body else body


def exec_line(argv: Sequence[Arg]) -> str:
    """The value of ExecStart= for `argv` (no prefixes: the worker's exit status matters)."""
    if not argv:
        raise ValueError("ExecStart needs a program")
    program = argv[0]
    if not isinstance(program, str):
        raise ValueError("the program of ExecStart= must be literal text, not a specifier")
    # systemd strips these prefixes from the first word even when quoted, refuses quotes, backslashes
    # and control characters in the path it executes, and expands `$` only in argv[0], not in that
    # path: such a program cannot be written faithfully.
    if (
        not program
        or program[0] in _EXEC_PREFIXES
        or any(ch in "$\"'\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in program)
    ):
        raise ValueError(
            f"program {program!r} must not start with one of {_EXEC_PREFIXES} "
            "nor contain $, quotes, backslashes or control characters"
        )
    return " ".join(exec_arg(a) for a in argv)


def env_assignment(name: str, value: str) -> str:
    """The value of one Environment= line, always quoted: `"NAME=value"` (no `$` expansion there)."""
    if not name or not (name[0].isalpha() or name[0] == "_") or not all(
        c.isascii() and (c.isalnum() or c == "_") for c in name
    ):
        raise ValueError(f"not an environment variable name: {name!r}")
    return '"' + _escape((f"{name}={value}",), expand_dollar=False) + '"'


def env_file(env: Mapping[str, str]) -> str:
    """An environment file (EnvironmentFile=) holding `env` exactly, one `NAME='value'` per line.

    systemd reads it without expanding anything; the quoting used is the subset on which systemd and
    a POSIX shell agree, so `. file` in a shell gives the same values: single quotes, or, for a value
    holding a single quote, double quotes with `\\`, `"`, `$` and `` ` `` escaped."""
    lines = []
    for name, value in env.items():
        env_assignment(name, value)  # validates the name, refuses line breaks
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            # systemd drops such an assignment ("invalid environment assignment") without failing.
            raise ValueError(f"environment value of {name} holds a control character: {value!r}")
        if "'" not in value:
            lines.append(f"{name}='{value}'")
        else:
            escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
            lines.append(f'{name}="{escaped}"')
    return "".join(line + "\n" for line in lines)
