"""systemd's own parsing of ExecStart= and Environment= values and of environment files, called from
libsystemd-shared.

There is no running systemd here (and `systemd-analyze verify` never shows argv), so the tests call the
very functions systemd 252's config_parse_exec()/config_parse_environ() use: extract_first_word()
(quotes and C escapes), specifier_printf() (`%%`, `%i`) and, at exec time, replace_env_argv()
(`$VAR`, `$$`) and load_env_file() (EnvironmentFile=). The loop around them mirrors
src/core/load-fragment.c of v252. The private library's ABI changes between versions, so `available()`
probes it with known answers and tests skip otherwise.
"""

from __future__ import annotations

import ctypes as C
from collections.abc import Mapping
from pathlib import Path

LIB = Path("/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so")
EXTRACT_CUNESCAPE = 1 << 1
EXTRACT_UNQUOTE = 1 << 5  # v252 numbering (v250+: KEEP_QUOTE took 1 << 4)
WHITESPACE = " \t\n\r"
PREFIXES = "-@:+!"


class _Spec(C.Structure):
    _fields_ = [("specifier", C.c_char), ("lookup", C.c_void_p), ("data", C.c_void_p)]


_lib: C.CDLL | None = None


def _load() -> C.CDLL:
    global _lib
    if _lib is None:
        lib = C.CDLL(str(LIB))
        lib.extract_first_word.argtypes = [C.POINTER(C.c_char_p), C.POINTER(C.c_void_p), C.c_char_p, C.c_int]
        lib.extract_first_word.restype = C.c_int
        lib.specifier_printf.argtypes = [
            C.c_char_p, C.c_size_t, C.POINTER(_Spec), C.c_char_p, C.c_void_p, C.POINTER(C.c_void_p)
        ]
        lib.specifier_printf.restype = C.c_int
        lib.replace_env_argv.argtypes = [C.POINTER(C.c_char_p), C.POINTER(C.c_char_p)]
        lib.replace_env_argv.restype = C.POINTER(C.c_char_p)
        _lib = lib
    return _lib


def available() -> bool:
    """The library exists and answers as v252 does (else the helpers would misparse)."""
    if not LIB.exists():
        return False
    try:
        return (
            _words(r'a "b c" "x\"y" ""') == ["a", "b c", 'x"y', ""]
            and _printf("%%h-%i", "7") == "%h-7"
            and _env_argv(["$$A", "$A"], {"A": "1"}) == ["$A", "1"]
        )
    except (OSError, AttributeError, ValueError):
        return False


class _Cursor:
    """A C string and a moving `const char *` into it, as extract_first_word() expects."""

    def __init__(self, text: str) -> None:
        self.buf = C.create_string_buffer(text.encode())
        self.p = C.c_char_p(C.addressof(self.buf))

    @property
    def rest(self) -> str:
        return (self.p.value or b"").decode()

    def skip(self, n: int) -> None:
        self.p = C.c_char_p(C.cast(self.p, C.c_void_p).value + n)  # type: ignore[operator]

    def word(self) -> str | None:
        out = C.c_void_p()
        r = _load().extract_first_word(C.byref(self.p), C.byref(out), None, EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE)
        if r < 0:
            raise ValueError(f"systemd cannot split {self.rest!r}: error {r}")
        return None if r == 0 else C.string_at(out.value).decode()  # type: ignore[arg-type]


def _words(text: str) -> list[str]:
    cur, out = _Cursor(text), []
    while (w := cur.word()) is not None:
        out.append(w)
    return out


def _printf(text: str, instance: str) -> str:
    lib = _load()
    value = C.create_string_buffer(instance.encode())
    table = (_Spec * 2)(
        _Spec(b"i", C.cast(lib.specifier_string, C.c_void_p), C.addressof(value)), _Spec(b"\0", None, None)
    )
    out = C.c_void_p()
    r = lib.specifier_printf(text.encode(), 4096, table, None, None, C.byref(out))
    if r < 0:
        raise ValueError(f"systemd cannot expand specifiers in {text!r}: error {r}")
    return C.string_at(out.value).decode()  # type: ignore[arg-type]


def _strv(items: list[str]) -> C.Array[C.c_char_p]:
    return (C.c_char_p * (len(items) + 1))(*[i.encode() for i in items], None)


def _env_argv(argv: list[str], env: Mapping[str, str]) -> list[str]:
    res = _load().replace_env_argv(_strv(argv), _strv([f"{k}={v}" for k, v in env.items()]))
    out, i = [], 0
    while res[i] is not None:
        out.append(res[i].decode())
        i += 1
    return out


def exec_argv(value: str, instance: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """(path, argv) the process started by `ExecStart=<value>` gets, for instance `instance`."""
    cur = _Cursor(value)
    first = cur.word()
    if first is None:
        raise ValueError("empty ExecStart")
    if first[:1] in PREFIXES:
        raise ValueError(f"unexpected prefix in {first!r}")
    path = _printf(first, instance)
    argv = [path]
    while cur.rest.strip(WHITESPACE):
        rest = cur.rest
        if rest[0] == ";" and (len(rest) == 1 or rest[1] in WHITESPACE):
            raise ValueError("a second command follows an unquoted ';'")
        if rest.startswith("\\;") and (len(rest) == 2 or rest[2] in WHITESPACE):
            cur.skip(2)
            argv.append(";")
            continue
        word = cur.word()
        if word is None:
            break
        argv.append(_printf(word, instance))
    return path, _env_argv(argv, env)


def environment(value: str, instance: str) -> dict[str, str]:
    """The variables one `Environment=<value>` line sets."""
    out = {}
    for word in _words(value):
        name, sep, val = _printf(word, instance).partition("=")
        if not sep:
            raise ValueError(f"not an assignment: {word!r}")
        out[name] = val
    return out


def env_file(path: Path) -> dict[str, str]:
    """The variables an `EnvironmentFile=<path>` sets: systemd's load_env_file(), as exec does."""
    lib = _load()
    lib.load_env_file.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(C.POINTER(C.c_char_p))]
    lib.load_env_file.restype = C.c_int
    out = C.POINTER(C.c_char_p)()
    r = lib.load_env_file(None, str(path).encode(), C.byref(out))
    if r < 0:
        raise ValueError(f"systemd cannot read {path}: error {r}")
    env, i = {}, 0
    while out[i] is not None:
        name, _, value = out[i].decode().partition("=")
        env[name] = value
        i += 1
    return env
