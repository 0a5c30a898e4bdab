"""Market profiles: timezone, sessions from the exchange calendar, currency, tick and lot rules, cycle ids."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

from catalyst_mcp.domain.decimals import round_to
from catalyst_mcp.domain.enums import Market, Side

CYCLE_ID_RE: Final = r"^(us|hk)_\d{8}_\d{6}_[0-9a-f]{6}$"
CYCLE_ID_PATTERN: Final = re.compile(CYCLE_ID_RE)
_SUFFIX_RE: Final = re.compile(r"[0-9a-f]{6}")

# The range of dates the exchange calendars are built for (XHKG holidays are recorded to 2049).
CALENDAR_FIRST_DAY: Final = date(2000, 1, 1)
CALENDAR_LAST_DAY: Final = date(2049, 12, 31)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


def is_cycle_id(value: str) -> bool:
    """True when `value` is a well-formed cycle id (the whole string, no trailing newline)."""
    return CYCLE_ID_PATTERN.fullmatch(value) is not None


def _to_us(at: datetime) -> int:
    return (at - _EPOCH) // _US


def _from_us(us: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(microseconds=us)).astimezone(tz)


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {at.isoformat()}")


@dataclass(frozen=True, slots=True)
class _SessionTable:
    """A calendar flattened to sorted trading intervals (µs since the epoch, UTC).

    `cum[i]` is the trading time before interval i, so trading time maps to wall time by bisection.
    """

    days: tuple[date, ...]
    day_index: Mapping[date, int]
    first_interval: tuple[int, ...]  # per day, plus a sentinel
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    cum: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SessionColumns:
    """A calendar's sessions as plain columns: day ordinals, and the open, break start, break end and close of
    each (µs since the epoch, UTC; a day without a break has ``NO_BREAK`` in both break columns). What the
    exchange calendar computes, in a form that can be stored and loaded without it."""

    days: tuple[int, ...]
    opens: tuple[int, ...]
    break_starts: tuple[int, ...]
    break_ends: tuple[int, ...]
    closes: tuple[int, ...]


NO_BREAK: Final = -(2**63) // 1000
_tables: dict[str, _SessionTable] = {}


def calendar_columns(calendar_name: str) -> SessionColumns:
    """Compute a calendar's sessions with exchange_calendars (pandas is imported here only: ~1-2 s)."""
    import exchange_calendars

    cal = exchange_calendars.get_calendar(
        calendar_name, start=CALENDAR_FIRST_DAY.isoformat(), end=CALENDAR_LAST_DAY.isoformat()
    )
    schedule = cal.schedule
    cols = [
        tuple(max(int(v) // 1000, NO_BREAK) for v in schedule[c].to_numpy(dtype="datetime64[ns]").astype("int64"))
        for c in ("open", "break_start", "break_end", "close")
    ]
    days = tuple(label.date().toordinal() for label in schedule.index)
    return SessionColumns(days, *cols)


def install_calendar(calendar_name: str, columns: SessionColumns) -> None:
    """Use ``columns`` (computed by ``calendar_columns``, possibly in another process) for ``calendar_name``."""
    _tables[calendar_name] = _table_of(columns)


def calendar_installed(calendar_name: str) -> bool:
    return calendar_name in _tables


def _session_table(calendar_name: str) -> _SessionTable:
    table = _tables.get(calendar_name)
    if table is None:
        table = _tables[calendar_name] = _table_of(calendar_columns(calendar_name))
    return table


def _table_of(columns: SessionColumns) -> _SessionTable:
    days: list[date] = []
    first_interval: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    rows = zip(columns.days, columns.opens, columns.break_starts, columns.break_ends, columns.closes, strict=True)
    for ordinal, open_, break_start, break_end, close in rows:
        days.append(date.fromordinal(ordinal))
        first_interval.append(len(starts))
        if break_start > NO_BREAK and break_end > NO_BREAK and open_ < break_start < break_end < close:
            starts += [open_, break_end]
            ends += [break_start, close]
        else:
            starts.append(open_)
            ends.append(close)
    first_interval.append(len(starts))
    cum = [0]
    for s, e in zip(starts, ends, strict=True):
        cum.append(cum[-1] + (e - s))
    return _SessionTable(
        days=tuple(days),
        day_index=MappingProxyType({d: i for i, d in enumerate(days)}),
        first_interval=tuple(first_interval),
        starts=tuple(starts),
        ends=tuple(ends),
        cum=tuple(cum),
    )


@dataclass(frozen=True, slots=True)
class MarketProfile:
    """Everything market-specific the core needs. Session facts come from the exchange calendar.

    `tick_bands` are (upper bound, tick) pairs in ascending order; a price falls in the first band whose
    bound it is below (or at, when `tick_upper_inclusive`); above the last bound `top_tick` applies.
    """

    market: Market
    calendar_name: str
    timezone: ZoneInfo
    sessions: tuple[tuple[time, time], ...]
    currency: str
    default_lot: Decimal
    tick_bands: tuple[tuple[Decimal, Decimal], ...]
    top_tick: Decimal
    tick_upper_inclusive: bool
    cycle_prefix: str

    # --- calendar -------------------------------------------------------------------------------------

    def _table(self) -> _SessionTable:
        return _session_table(self.calendar_name)

    def warm_up(self) -> None:
        """Build the exchange calendar now, unless it was installed (it takes ~1-2 s on first use)."""
        self._table()

    def _local(self, at: datetime) -> datetime:
        _require_aware(at)
        local = at.astimezone(self.timezone)
        if not CALENDAR_FIRST_DAY <= local.date() <= CALENDAR_LAST_DAY:
            raise ValueError(
                f"{local.date()} is outside the {self.calendar_name} calendar "
                f"({CALENDAR_FIRST_DAY}..{CALENDAR_LAST_DAY})"
            )
        return local

    def is_open(self, at: datetime) -> bool:
        """True when `at` (aware) falls inside a trading interval: open inclusive, close exclusive."""
        self._local(at)
        t = self._table()
        us = _to_us(at)
        i = bisect_right(t.starts, us) - 1
        return i >= 0 and us < t.ends[i]

    def session_intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The trading intervals of `day` in market time (two for an HK full day), empty if not a session."""
        t = self._table()
        k = t.day_index.get(day)
        if k is None:
            return ()
        return tuple(
            (_from_us(t.starts[i], self.timezone), _from_us(t.ends[i], self.timezone))
            for i in range(t.first_interval[k], t.first_interval[k + 1])
        )

    def session_bounds(self, day: date) -> tuple[datetime, datetime] | None:
        """Open and close of the trading day `day` (aware, market time; early closes included), or None."""
        intervals = self.session_intervals(day)
        if not intervals:
            return None
        return intervals[0][0], intervals[-1][1]

    def is_session(self, day: date) -> bool:
        return day in self._table().day_index

    def session_number(self, day: date) -> int:
        """The index of the trading day `day` in the calendar (0 for its first session)."""
        k = self._table().day_index.get(day)
        if k is None:
            raise ValueError(f"{day} is not a {self.calendar_name} session")
        return k

    def latest_session(self, at: datetime) -> date:
        """The latest trading day whose open is at or before `at`."""
        self._local(at)
        t = self._table()
        i = bisect_right(t.starts, _to_us(at)) - 1
        if i < 0:
            raise ValueError(f"no {self.calendar_name} session before {at.isoformat()} in the calendar")
        return t.days[bisect_right(t.first_interval, i) - 1]

    def latest_session_start(self, at: datetime) -> datetime:
        """The open of the latest trading day whose open is at or before `at` (market time)."""
        t = self._table()
        k = t.day_index[self.latest_session(at)]
        return _from_us(t.starts[t.first_interval[k]], self.timezone)

    def previous_session(self, day: date) -> date:
        """The last trading day strictly before `day` (`day` need not be a session)."""
        t = self._table()
        k = bisect_left(t.days, day) - 1
        if k < 0:
            raise ValueError(f"no {self.calendar_name} session before {day} in the calendar")
        return t.days[k]

    def trading_time(self, at: datetime) -> timedelta:
        """Trading time from the calendar's first open to `at`; constant while the market is closed."""
        self._local(at)
        t = self._table()
        us = _to_us(at)
        i = bisect_right(t.starts, us) - 1
        if i < 0:
            return timedelta(0)
        return timedelta(microseconds=t.cum[i] + min(us, t.ends[i]) - t.starts[i])

    def at_trading_time(self, elapsed: timedelta) -> datetime:
        """Inverse of `trading_time`: the moment `elapsed` trading time after the first open.

        The result is always inside a trading interval: a close maps to the next open.
        """
        t = self._table()
        x = max(0, elapsed // _US)
        i = bisect_right(t.cum, x) - 1
        if i >= len(t.starts):
            raise ValueError(f"trading time {elapsed} is past the end of the {self.calendar_name} calendar")
        return _from_us(t.starts[i] + x - t.cum[i], self.timezone)

    # --- prices and quantities ------------------------------------------------------------------------

    def tick_for(self, price: Decimal) -> Decimal:
        """The minimum price increment at `price`."""
        if not price.is_finite() or price < 0:
            raise ValueError(f"price must be a finite non-negative number, got {price}")
        for bound, tick in self.tick_bands:
            if price < bound or (self.tick_upper_inclusive and price == bound):
                return tick
        return self.top_tick

    def round_to_tick(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """`price` rounded to a multiple of its tick (half-even by default)."""
        return round_to(price, self.tick_for(price), rounding)

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """A limit price on the tick, never worse for the order's side: buys round down, sells up."""
        return self.round_to_tick(price, ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)

    # --- identifiers ----------------------------------------------------------------------------------

    def cycle_id(self, at: datetime, suffix_hex6: str) -> str:
        """`us_20261127_093000_ab12cd`: prefix, `at` in the market's timezone, six lower-case hex digits."""
        _require_aware(at)
        if _SUFFIX_RE.fullmatch(suffix_hex6) is None:
            raise ValueError(f"cycle id suffix must be 6 lower-case hex digits, got {suffix_hex6!r}")
        local = at.astimezone(self.timezone)
        return f"{self.cycle_prefix}_{local:%Y%m%d_%H%M%S}_{suffix_hex6}"


US_PROFILE: Final = MarketProfile(
    market=Market.US,
    calendar_name="XNYS",
    timezone=ZoneInfo("America/New_York"),
    sessions=((time(9, 30), time(16, 0)),),
    currency="USD",
    default_lot=Decimal(1),
    tick_bands=((Decimal("1"), Decimal("0.0001")),),
    top_tick=Decimal("0.01"),
    tick_upper_inclusive=False,
    cycle_prefix="us",
)

# Simplified HKEX spread table: each band covers prices up to and including its bound.
HK_PROFILE: Final = MarketProfile(
    market=Market.HK,
    calendar_name="XHKG",
    timezone=ZoneInfo("Asia/Hong_Kong"),
    sessions=((time(9, 30), time(12, 0)), (time(13, 0), time(16, 0))),
    currency="HKD",
    default_lot=Decimal(100),
    tick_bands=(
        (Decimal("0.25"), Decimal("0.001")),
        (Decimal("0.50"), Decimal("0.005")),
        (Decimal("10"), Decimal("0.01")),
        (Decimal("20"), Decimal("0.02")),
        (Decimal("100"), Decimal("0.05")),
        (Decimal("200"), Decimal("0.1")),
        (Decimal("500"), Decimal("0.2")),
        (Decimal("1000"), Decimal("0.5")),
        (Decimal("2000"), Decimal("1")),
        (Decimal("5000"), Decimal("2")),
    ),
    top_tick=Decimal("5"),
    tick_upper_inclusive=True,
    cycle_prefix="hk",
)

PROFILES: Final[Mapping[Market, MarketProfile]] = MappingProxyType({Market.US: US_PROFILE, Market.HK: HK_PROFILE})


def profile_for(market: Market | str) -> MarketProfile:
    """The profile of `market`, given as a Market or a name in any case ("us", "HK")."""
    if isinstance(market, Market):
        return PROFILES[market]
    try:
        return PROFILES[Market(str(market).strip().upper())]
    except ValueError:
        raise ValueError(f"unknown market {market!r}: expected one of {', '.join(m.value for m in Market)}") from None
