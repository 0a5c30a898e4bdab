"""The simulated exchange's bars: drawn from the same price path as its quotes (``sim_prices``), so a bar's close
is the quote's last price at the bar's end, and pure — the same (seed, symbol, time) give the same bars.

A bar covers trading time only: daily bars one session each (opening at the previous close), intraday bars
fixed slices of a session's intervals (none across the HK lunch break or a night). The bar still forming at
``at`` ends at ``at``. Highs and lows are the extremes of the path sampled within the bar (its ends and evenly
spaced points between), volume the share of the day's volume the model trades in the bar.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from catalyst_mcp.brokers.sim_prices import Instrument, _state, _tick_price, _volume_share
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.signals.bars import Bar

_SAMPLES_PER_DAY: Final = 24  # path points sampled for a daily bar's high and low
_SAMPLES_PER_SLICE: Final = 4  # and for an intraday bar's
MAX_BARS: Final = 500


def _path(seed: int, instrument: Instrument, profile: MarketProfile, times: list[datetime]) -> list[float]:
    return [_state(seed, instrument, t, profile).mid for t in times]


def _bar(profile: MarketProfile, start: datetime, opening: float, path: list[float], volume: float) -> Bar:
    def tick(value: float) -> Decimal:
        return _tick_price(profile, value, ROUND_HALF_EVEN)

    return Bar(
        at=start,
        open=tick(opening),
        high=tick(max([opening, *path])),
        low=tick(min([opening, *path])),
        close=tick(path[-1]),
        volume=Decimal(max(int(volume), 0)),
    )


def _even(start: datetime, end: datetime, points: int) -> list[datetime]:
    step = (end - start) / points
    return [start + step * (i + 1) for i in range(points)]


def _day_factor(seed: int, instrument: Instrument, profile: MarketProfile, day: date) -> float:
    bounds = profile.session_bounds(day)
    assert bounds is not None
    return 0.5 + 2.5 * _state(seed, instrument, bounds[0], profile).day_hash[1] ** 2


def daily_bars(seed: int, instrument: Instrument, at: datetime, profile: MarketProfile, count: int) -> list[Bar]:
    """The last ``count`` daily bars at ``at``, oldest first; today's (if its session has opened) ends at ``at``."""
    count = min(max(count, 0), MAX_BARS)
    days: list[date] = []
    day = profile.latest_session(at)
    while len(days) < count:
        days.append(day)
        day = profile.previous_session(day)
    bars = []
    for day in reversed(days):
        intervals = profile.session_intervals(day)
        opened, closed = intervals[0][0], min(intervals[-1][1], at)
        times = [t for t in _even(opened, intervals[-1][1], _SAMPLES_PER_DAY) if t < closed] + [closed]
        path = _path(seed, instrument, profile, times)
        prev_close = _state(seed, instrument, opened, profile).prev_close
        share = _volume_share(_state(seed, instrument, closed, profile).progress)
        volume = instrument.avg_daily_volume * _day_factor(seed, instrument, profile, day) * share
        bars.append(_bar(profile, opened, prev_close, path, volume))
    return bars


def intraday_bars(
    seed: int, instrument: Instrument, at: datetime, profile: MarketProfile, minutes: int, count: int
) -> list[Bar]:
    """The last ``count`` bars of ``minutes`` each at ``at``, oldest first, over trading time only (as far back
    as needed, across sessions); the bar forming at ``at`` ends at ``at``."""
    count = min(max(count, 0), MAX_BARS)
    size = timedelta(minutes=minutes)
    slices: list[tuple[datetime, datetime]] = []
    day = profile.latest_session(at)
    while len(slices) < count:
        for start, end in reversed(profile.session_intervals(day)):
            edges = []
            t = start
            while t < end:
                edges.append((t, min(t + size, end)))
                t += size
            for begin, finish in reversed(edges):
                if begin < at and len(slices) < count:
                    slices.append((begin, min(finish, at)))
        day = profile.previous_session(day)
    bars = []
    for begin, finish in reversed(slices):
        day = profile.latest_session(begin)
        bounds = profile.session_bounds(day)
        assert bounds is not None
        before = _state(seed, instrument, begin, profile)
        after = _state(seed, instrument, finish, profile)
        path = _path(seed, instrument, profile, _even(begin, finish, _SAMPLES_PER_SLICE))
        day_volume = instrument.avg_daily_volume * _day_factor(seed, instrument, profile, day)
        share = _volume_share(after.progress) - _volume_share(before.progress)
        bars.append(_bar(profile, begin, before.mid, path, day_volume * share))
    return bars
