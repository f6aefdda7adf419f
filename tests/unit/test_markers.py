"""Stage and fact markers are signed with the session's nonce where scripts are sent; output cannot
fake one."""

from __future__ import annotations

from deploytool.commands import release as rel
from deploytool.commands.unitfiles import SEPARATOR
from deploytool.remote import _verify, sign


def test_markers_in_a_script_are_signed_and_verified_back() -> None:
    text = sign(rel.stage("build") + "\necho @@deploytool-release 20260101000000", "n0nce")
    assert "@@deploytool-stage-n0nce build" in text and "@@deploytool-release-n0nce 2026" in text
    assert _verify("@@deploytool-stage-n0nce build", "n0nce") == "@@deploytool-stage build"
    assert _verify("@@deploytool-release-n0nce 20260101000000", "n0nce") == "@@deploytool-release 20260101000000"


def test_unsigned_or_foreign_markers_from_output_are_defused() -> None:
    for forged in ("@@deploytool-stage switch", "@@deploytool-release-guess 1", "@@deploytool-stage-other x"):
        assert _verify(forged, "n0nce").startswith("(unsigned) ")
    assert _verify("plain output", "n0nce") == "plain output"


def test_unit_separator_is_not_a_marker() -> None:
    assert sign(SEPARATOR, "n0nce") == SEPARATOR
