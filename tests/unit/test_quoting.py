"""Escaping values for unit files: hand-checked expectations, then systemd's own parser reading them back."""

from __future__ import annotations

import random

import pytest
import systemd_parser
from in_ci import required_in_ci

from deploytool.systemd_quote import (
    INSTANCE,
    Arg,
    Spec,
    Specifier,
    env_assignment,
    escape_specifiers,
    exec_arg,
    exec_line,
)

needs_systemd_parser = required_in_ci(systemd_parser.available(), "libsystemd-shared-252")

# Checked by hand against systemd.service(5) "Command lines" and systemd.unit(5) "Specifiers".
EXEC_ARGS = [
    ("plain", "plain"),
    ("-c", "-c"),
    ("redis://10.0.0.5:6379/1", "redis://10.0.0.5:6379/1"),
    ("two words", '"two words"'),
    ("%h", "%%h"),  # Celery's own %h, not systemd's home directory
    ("100%", "100%%"),
    ("$HOME", "$$HOME"),  # the worker sees the literal text
    ("${HOME}", "$${HOME}"),
    (r"back\slash", r'"back\\slash"'),
    ('say "hi"', r'"say \"hi\""'),
    ("it's", '"it\'s"'),
    ("semi;colon", '"semi;colon"'),
    (";", '";"'),  # a bare ; would start a second command
    ("", '""'),
    ("tab\there", r'"tab\there"'),
    ("bell\a", r'"bell\a"'),
    ("esc\x1b", r'"esc\x1b"'),
    ("ünïcode", "ünïcode"),
    ("a b%$\\\"';", r'"a b%%$$\\\"' + "';\""),
]


@pytest.mark.parametrize(("arg", "written"), EXEC_ARGS)
def test_exec_arg(arg: str, written: str) -> None:
    assert exec_arg(arg) == written


def test_specifier_argument_keeps_instance_unescaped() -> None:
    arg = Specifier(("shop-celery-", INSTANCE, "@w1 100%"))
    assert exec_arg(arg) == '"shop-celery-%i@w1 100%%"'
    assert exec_arg(Specifier((INSTANCE,))) == "%i"
    assert str(arg) == "shop-celery-%i@w1 100%"
    assert arg.expand({"i": "3"}) == "shop-celery-3@w1 100%"


def test_spec_letter_is_checked() -> None:
    with pytest.raises(ValueError):
        Spec("%")
    with pytest.raises(ValueError):
        Spec("ii")


def test_exec_line_joins_words() -> None:
    assert exec_line(["/usr/bin/env", "a b", "%i"]) == '/usr/bin/env "a b" %%i'


@pytest.mark.parametrize(
    "program", ["", "-sidekiq", "@sidekiq", "+x", "!x", ":x", "$HOME/bin/x", 'a"b', "a'b", "a\\b", "a\tb"]
)
def test_exec_line_refuses_programs_systemd_would_misread(program: str) -> None:
    with pytest.raises(ValueError):
        exec_line([program, "arg"])


def test_exec_line_refuses_empty_and_specifier_programs() -> None:
    with pytest.raises(ValueError):
        exec_line([])
    with pytest.raises(ValueError):
        exec_line([Specifier(("/bin/", INSTANCE))])


@pytest.mark.parametrize(
    ("name", "value", "written"),
    [
        ("APP_ENV", "production", '"APP_ENV=production"'),
        ("EMPTY", "", '"EMPTY="'),
        ("A", "b c", '"A=b c"'),
        ("A", "100%", '"A=100%%"'),
        ("A", "$HOME", '"A=$HOME"'),  # Environment= does not expand $VAR
        ("A", 'say "hi"', r'"A=say \"hi\""'),
        ("A", "x\\y", r'"A=x\\y"'),
        ("A", "a;b", '"A=a;b"'),
        ("A", "a\tb", r'"A=a\tb"'),
    ],
)
def test_env_assignment(name: str, value: str, written: str) -> None:
    assert env_assignment(name, value) == written


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "Ä"])
def test_env_assignment_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        env_assignment(name, "x")


def test_escape_specifiers() -> None:
    assert escape_specifiers("/srv/app 100%/current") == "/srv/app 100%%/current"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_line_breaks_and_nul_never_reach_a_unit(bad: str) -> None:
    for write in (exec_arg, lambda v: env_assignment("A", v), escape_specifiers):
        with pytest.raises(ValueError):
            write(bad)
    with pytest.raises(ValueError):
        exec_arg(Specifier((bad, INSTANCE)))


# --- read back by systemd's own code -------------------------------------------------------------


@needs_systemd_parser
def test_systemd_reads_back_every_hand_checked_argument() -> None:
    argv: list[Arg] = ["/usr/bin/printf", *(arg for arg, _ in EXEC_ARGS), Specifier(("n-", INSTANCE, "@h"))]
    path, seen = systemd_parser.exec_argv(exec_line(argv), instance="7", env={"HOME": "/root"})
    assert path == "/usr/bin/printf"
    assert seen == [*(arg for arg in argv[:-1] if isinstance(arg, str)), "n-7@h"]


@needs_systemd_parser
def test_systemd_reads_back_random_arguments() -> None:
    # Words built from every character with a meaning in unit syntax, and some without.
    alphabet = ' \t"\'\\;%$${}ia-=/ü\x1b'
    rng = random.Random(252)
    for _ in range(300):
        argv = ["/bin/true", *("".join(rng.choices(alphabet, k=rng.randint(0, 8))) for _ in range(4))]
        _, seen = systemd_parser.exec_argv(exec_line(argv), instance="1", env={"i": "X", "a": "Y"})
        assert seen == argv, exec_line(argv)
        value = argv[1]
        assert systemd_parser.environment(env_assignment("V", value), instance="1") == {"V": value}


@needs_systemd_parser
def test_unescaped_text_would_have_been_misread() -> None:
    # The check above has teeth: the same arguments written naively do not survive.
    _, seen = systemd_parser.exec_argv('/bin/true two words %%h $HOME', instance="1", env={"HOME": "/root"})
    assert seen != ["/bin/true", "two words", "%h", "$HOME"]
