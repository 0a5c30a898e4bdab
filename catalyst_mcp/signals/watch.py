"""When the position monitor looks: the session facts an exit signal needs at a moment (today's close, the
start of the lunch break) and the moment of the next pass — an interval later in a session, the next open
when the market is closed (nights, weekends, holidays, the HK lunch break). Pure: the calendar is the
market profile's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from catalyst_mcp.markets.profiles import MarketProfile

_LOOK_AHEAD_DAYS: Final = 30  # longer than any exchange closure in the calendars
LAST_LOOK: Final = timedelta(minutes=1)  # the last pass of a trading interval, this long before its end


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """The trading day around ``at``: ``open`` when ``at`` is inside a trading interval; ``close`` the day's
    last close (a half day's early close) and ``lunch_start`` the end of its first interval when it has two."""

    open: bool
    close: datetime | None
    lunch_start: datetime | None


def session_facts(profile: MarketProfile, at: datetime) -> SessionFacts:
    day = at.astimezone(profile.timezone).date()
    intervals = profile.session_intervals(day)
    if not intervals:
        return SessionFacts(False, None, None)
    lunch = intervals[0][1] if len(intervals) > 1 else None
    return SessionFacts(profile.is_open(at), intervals[-1][1], lunch)


def next_open(profile: MarketProfile, at: datetime) -> datetime:
    """The first trading interval's start after ``at`` (``at`` itself excluded)."""
    day = at.astimezone(profile.timezone).date()
    for offset in range(_LOOK_AHEAD_DAYS + 1):
        for start, _ in profile.session_intervals(day + timedelta(days=offset)):
            if start > at:
                return start
    raise ValueError(f"no {profile.calendar_name} session within {_LOOK_AHEAD_DAYS} days after {at.isoformat()}")


def next_pass(profile: MarketProfile, at: datetime, interval: timedelta) -> datetime:
    """When the pass after one at ``at`` runs: ``interval`` later while the market is open then; when that
    falls past the end of the current trading interval, one last pass ``LAST_LOOK`` before that end (the
    end-of-session exits must get their look); else the next open. Never inside a closed stretch."""
    if interval <= timedelta(0):
        raise ValueError(f"interval must be positive, got {interval}")
    due = at + interval
    if profile.is_open(due):
        return due
    day = at.astimezone(profile.timezone).date()
    for start, end in profile.session_intervals(day):
        if start <= at < end:
            last = end - LAST_LOOK
            if last > at:
                return last
    return next_open(profile, due)
