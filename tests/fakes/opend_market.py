"""The emulated HKEX market behind OpenD: instruments with their board lots, deterministic prices at the injected
clock, the price spread (tick) table, sessions with the lunch break, and K-line bars.

The spread table is HKEX's after its 2025 reductions (HK$10-20 trades in 0.01, HK$20-50 in 0.02), which is
not the adapter's simplified profile table: an adapter that rounds by its own table instead of the spread in
the snapshot sends prices OpenD refuses. Prices are a pure function of (code, time) unless a test pins one.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final
from zoneinfo import ZoneInfo

HKT: Final = ZoneInfo("Asia/Hong_Kong")
MORNING: Final = (time(9, 30), time(12, 0))
AFTERNOON: Final = (time(13, 0), time(16, 0))
SESSION_MINUTES: Final = 330

# (upper bound inclusive, spread); above the last bound the spread is 5.
SPREADS: Final = (
    (Decimal("0.25"), Decimal("0.001")),
    (Decimal("0.50"), Decimal("0.005")),
    (Decimal("10"), Decimal("0.01")),
    (Decimal("20"), Decimal("0.01")),
    (Decimal("50"), Decimal("0.02")),
    (Decimal("100"), Decimal("0.05")),
    (Decimal("200"), Decimal("0.1")),
    (Decimal("500"), Decimal("0.2")),
    (Decimal("1000"), Decimal("0.5")),
    (Decimal("2000"), Decimal("1")),
    (Decimal("5000"), Decimal("2")),
)
TOP_SPREAD: Final = Decimal("5")


def spread_at(price: Decimal) -> Decimal:
    for bound, spread in SPREADS:
        if price <= bound:
            return spread
    return TOP_SPREAD


def on_spread(price: Decimal) -> bool:
    return price > 0 and price % spread_at(price) == 0


def to_spread(value: float | Decimal) -> Decimal:
    price = Decimal(str(value))
    spread = spread_at(price)
    return (price / spread).quantize(Decimal(1), ROUND_HALF_EVEN) * spread


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str  # five digits, as OpenD carries it inside a security (market HK)
    name: str
    lot: int
    base: Decimal  # the previous close
    avg_volume: int  # shares on a typical day


INSTRUMENTS: Final = {
    i.code: i
    for i in (
        Instrument("00700", "TENCENT", 100, Decimal("380.0"), 18_000_000),
        Instrument("00005", "HSBC HOLDINGS", 400, Decimal("62.50"), 20_000_000),
        Instrument("09988", "BABA-W", 100, Decimal("85.00"), 60_000_000),
        Instrument("01810", "XIAOMI-W", 200, Decimal("18.00"), 120_000_000),
        Instrument("00388", "HKEX", 100, Decimal("300.0"), 5_000_000),
        Instrument("03690", "MEITUAN-W", 100, Decimal("120.0"), 25_000_000),
        Instrument("02318", "PING AN", 500, Decimal("45.00"), 30_000_000),
        Instrument("00939", "CCB", 1000, Decimal("5.50"), 200_000_000),
    )
}


def market_state(at: datetime) -> str:
    """``MORNING``, ``REST`` (the lunch break), ``AFTERNOON`` or ``CLOSED`` on a weekday; ``CLOSED`` at weekends."""
    local = at.astimezone(HKT)
    if local.weekday() >= 5:
        return "CLOSED"
    now = local.time()
    if MORNING[0] <= now < MORNING[1]:
        return "MORNING"
    if MORNING[1] <= now < AFTERNOON[0]:
        return "REST"
    if AFTERNOON[0] <= now < AFTERNOON[1]:
        return "AFTERNOON"
    return "CLOSED"


def trading(at: datetime) -> bool:
    return market_state(at) in ("MORNING", "AFTERNOON")


def _minute_of_day(at: datetime) -> float:
    """Trading minutes since the open of `at`'s day (0 before it, 330 after the close; the lunch break flat)."""
    local = at.astimezone(HKT)
    day = local.date()
    total = 0.0
    for start, end in (MORNING, AFTERNOON):
        begin = datetime.combine(day, start, HKT)
        finish = datetime.combine(day, end, HKT)
        total += max(0.0, (min(local, finish) - begin).total_seconds() / 60)
    return total


def _phase(code: str) -> float:
    return (zlib.crc32(code.encode()) % 1000) / 100


def model_price(instrument: Instrument, at: datetime) -> Decimal:
    """The price of `instrument` at `at`: a slow and a fast wave around its previous close, on the spread."""
    m = _minute_of_day(at)
    h = _phase(instrument.code)
    factor = 1 + 0.004 * math.sin(m / 17 + h) + 0.002 * math.sin(m / 5.3 + 2 * h) + 0.003 * math.sin(h)
    return to_spread(float(instrument.base) * factor)


def volume_so_far(instrument: Instrument, at: datetime) -> int:
    return int(instrument.avg_volume * _minute_of_day(at) / SESSION_MINUTES)


def session_minutes_before(at: datetime, count: int) -> list[datetime]:
    """The starts of the last `count` session minutes that ended at or before `at` (weekdays), oldest first."""
    local = at.astimezone(HKT).replace(second=0, microsecond=0)
    found: list[datetime] = []
    cursor = local - timedelta(minutes=1)
    guard = 0
    while len(found) < count and guard < count * 10 + 5000:
        guard += 1
        if cursor.weekday() < 5 and trading(cursor):
            found.append(cursor)
        cursor -= timedelta(minutes=1)
    return list(reversed(found))


def previous_weekdays(day: date, count: int) -> list[date]:
    """The `count` weekdays before `day` and `day` itself when it is one, oldest first."""
    days: list[date] = []
    cursor = day
    while len(days) < count:
        if cursor.weekday() < 5:
            days.append(cursor)
        cursor -= timedelta(days=1)
    return list(reversed(days))
