"""Storable text and quoted values: pure helpers at the edges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from catalyst_mcp.domain.errors import shown
from catalyst_mcp.domain.text import first_unstorable, storable, unstorable


def test_shown_quotes_short_values_whole_and_cuts_long_ones_saying_their_length() -> None:
    assert shown("AAPL") == "'AAPL'"
    assert shown("a\nb") == "'a\\nb'"
    long = shown("x" * 10_000)
    assert long.startswith("'" + "x" * 79 + "'…") and long.endswith("(10000 characters)")


@given(st.text())
def test_shown_is_one_line_and_bounded(value: str) -> None:
    text = shown(value)
    assert "\n" not in text and len(text) <= 10 * 80 + 30


@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=10))
def test_storable_makes_anything_storable_and_keeps_what_already_is(value: object) -> None:
    cleaned = storable(value)
    assert first_unstorable(cleaned, "") is None
    if first_unstorable(value, "") is None:
        assert cleaned == value


def test_the_problems_are_named() -> None:
    assert unstorable("fine") is None
    assert unstorable("a\x00") == "contains a NUL character"
    assert unstorable("\udc00") == "contains an unpaired surrogate (not valid Unicode)"
    assert first_unstorable({"a": [1, "x", {"b": "\x00"}]}, "") == ("a[2].b", "contains a NUL character")
