"""When the monitor looks (signals/watch.py): passes an interval apart in a session, one last look before each
interval's end, none in a closed stretch — US nights, Thanksgiving and its half day, the HK lunch break."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.markets.profiles import profile_for
from catalyst_mcp.signals.watch import LAST_LOOK, next_open, next_pass, session_facts

NY = ZoneInfo("America/New_York")
HKT = ZoneInfo("Asia/Hong_Kong")
US = profile_for("US")
HK = profile_for("HK")
FIVE = timedelta(minutes=5)


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=NY)


def hk(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=HKT)


def test_a_pass_in_the_session_is_an_interval_later() -> None:
    assert next_pass(US, ny(25, 10), FIVE) == ny(25, 10, 5)


def test_the_last_pass_of_a_session_comes_a_minute_before_the_close() -> None:
    assert next_pass(US, ny(25, 15, 57), FIVE) == ny(25, 16) - LAST_LOOK


def test_after_the_last_look_the_next_pass_is_the_next_open_past_thanksgiving() -> None:
    # Thursday 26 November 2026 is a holiday; Friday 27 is a half day.
    assert next_pass(US, ny(25, 16) - LAST_LOOK, FIVE) == ny(27, 9, 30)
    assert next_open(US, ny(25, 20)) == ny(27, 9, 30)


def test_the_half_day_closes_early_and_its_facts_say_so() -> None:
    facts = session_facts(US, ny(27, 12))
    assert facts.open and facts.close == ny(27, 13) and facts.lunch_start is None
    assert next_pass(US, ny(27, 12, 58), FIVE) == ny(27, 13) - LAST_LOOK
    assert next_pass(US, ny(27, 13) - LAST_LOOK, FIVE) == ny(30, 9, 30)  # past the weekend


def test_hk_sleeps_through_the_lunch_break_after_a_last_look() -> None:
    facts = session_facts(HK, hk(2, 11))
    assert facts.open and facts.lunch_start == hk(2, 12) and facts.close == hk(2, 16)
    assert next_pass(HK, hk(2, 11, 57), FIVE) == hk(2, 12) - LAST_LOOK
    assert next_pass(HK, hk(2, 12) - LAST_LOOK, FIVE) == hk(2, 13)
    assert not session_facts(HK, hk(2, 12, 30)).open


def test_a_day_without_a_session_has_no_close() -> None:
    facts = session_facts(US, ny(26, 11))
    assert facts == type(facts)(False, None, None)


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        next_pass(US, ny(25, 10), timedelta(0))


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2026, 11, 20), max_value=datetime(2026, 12, 20)),
    minutes=st.integers(min_value=1, max_value=240),
    market=st.sampled_from([US, HK]),
)
def test_a_pass_is_always_later_and_inside_a_session(start: datetime, minutes: int, market: object) -> None:
    profile = US if market is US else HK
    at = start.replace(tzinfo=profile.timezone)
    due = next_pass(profile, at, timedelta(minutes=minutes))
    assert due > at
    assert profile.is_open(due)
    # nothing is skipped: no open moment between `at` + interval and `due` unless `due` is the last look
    if due > at + timedelta(minutes=minutes):
        assert not profile.is_open(due - timedelta(seconds=1)) or due - at <= timedelta(minutes=minutes)
