"""The simulated exchange's prices: a pure, deterministic function of (seed, symbol, simulated time).

Each trading day's close is exp(L(day)), where L is log(base price) plus three slow sinusoids over the
session number (phases hashed per seed and symbol) plus a small hashed per-day term, so prices wander
about ±15 % around the base and move at most about 3 % from one close to the next. Within a day the log price
goes linearly from the previous close to the day's close over the session's trading time, plus a
wiggle of three hashed sinusoids that vanishes at the open and the close: the path is continuous,
also across nights and the HK lunch break, and O(1) to evaluate.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Final

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.models import Quote
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.signals.scanner import ScanRow


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    base_price: Decimal
    avg_daily_volume: int
    spread_bps: Decimal
    lot: Decimal


@dataclass(frozen=True, slots=True)
class DayStats:
    prev_close: Decimal
    last: Decimal
    change_pct: Decimal
    volume: Decimal
    relative_volume: Decimal


def _universe(rows: Iterable[tuple[str, str, str, int, str, int]]) -> Mapping[str, Instrument]:
    return MappingProxyType(
        {
            sym: Instrument(sym, name, Decimal(price), adv, Decimal(bps), Decimal(lot))
            for sym, name, price, adv, bps, lot in rows
        }
    )


# symbol, name, base price, average daily volume, spread in basis points, lot
UNIVERSE_US: Final = _universe(
    [
        ("AAPL", "Apple Inc.", "190", 55_000_000, "1.5", 1),
        ("MSFT", "Microsoft Corp.", "420", 22_000_000, "1.5", 1),
        ("NVDA", "NVIDIA Corp.", "120", 300_000_000, "1.5", 1),
        ("AMZN", "Amazon.com Inc.", "185", 45_000_000, "1.5", 1),
        ("GOOGL", "Alphabet Inc. Class A", "170", 28_000_000, "1.5", 1),
        ("META", "Meta Platforms Inc.", "500", 15_000_000, "2", 1),
        ("TSLA", "Tesla Inc.", "250", 95_000_000, "2", 1),
        ("JPM", "JPMorgan Chase & Co.", "200", 9_000_000, "2", 1),
        ("V", "Visa Inc.", "280", 6_500_000, "2", 1),
        ("MA", "Mastercard Inc.", "460", 3_000_000, "3", 1),
        ("UNH", "UnitedHealth Group Inc.", "500", 4_000_000, "3", 1),
        ("XOM", "Exxon Mobil Corp.", "115", 16_000_000, "2", 1),
        ("JNJ", "Johnson & Johnson", "155", 7_000_000, "2", 1),
        ("PG", "Procter & Gamble Co.", "165", 6_500_000, "2", 1),
        ("HD", "Home Depot Inc.", "350", 3_500_000, "3", 1),
        ("KO", "Coca-Cola Co.", "62", 13_000_000, "2", 1),
        ("PEP", "PepsiCo Inc.", "170", 5_500_000, "2", 1),
        ("COST", "Costco Wholesale Corp.", "850", 2_000_000, "4", 1),
        ("AVGO", "Broadcom Inc.", "160", 25_000_000, "2", 1),
        ("AMD", "Advanced Micro Devices Inc.", "150", 50_000_000, "2", 1),
        ("NFLX", "Netflix Inc.", "650", 3_500_000, "4", 1),
        ("CRM", "Salesforce Inc.", "270", 6_000_000, "3", 1),
        ("ORCL", "Oracle Corp.", "140", 9_000_000, "2", 1),
        ("INTC", "Intel Corp.", "30", 45_000_000, "3", 1),
        ("BAC", "Bank of America Corp.", "40", 38_000_000, "2.5", 1),
        ("WMT", "Walmart Inc.", "68", 17_000_000, "2", 1),
        ("DIS", "Walt Disney Co.", "100", 9_000_000, "2", 1),
        ("CSCO", "Cisco Systems Inc.", "50", 18_000_000, "2", 1),
        ("ADBE", "Adobe Inc.", "500", 3_000_000, "4", 1),
        ("QCOM", "Qualcomm Inc.", "170", 8_000_000, "3", 1),
        ("BRK.B", "Berkshire Hathaway Inc. Class B", "420", 3_500_000, "2", 1),
        ("LLY", "Eli Lilly and Co.", "800", 3_000_000, "4", 1),
        ("ABBV", "AbbVie Inc.", "175", 6_000_000, "2.5", 1),
        ("CVX", "Chevron Corp.", "155", 8_000_000, "2", 1),
        ("MRK", "Merck & Co. Inc.", "120", 8_500_000, "2", 1),
        ("PFE", "Pfizer Inc.", "28", 35_000_000, "3.5", 1),
    ]
)

UNIVERSE_HK: Final = _universe(
    [
        ("00700", "Tencent Holdings", "380", 18_000_000, "5", 100),
        ("00005", "HSBC Holdings", "65", 20_000_000, "8", 400),
        ("09988", "Alibaba Group", "80", 45_000_000, "6", 100),
        ("00941", "China Mobile", "70", 12_000_000, "7", 500),
        ("01299", "AIA Group", "60", 25_000_000, "8", 200),
        ("03690", "Meituan", "120", 25_000_000, "8", 100),
        ("00388", "Hong Kong Exchanges and Clearing", "300", 6_000_000, "6", 100),
        ("02318", "Ping An Insurance", "40", 30_000_000, "12", 500),
        ("00001", "CK Hutchison Holdings", "42", 5_000_000, "12", 500),
        ("01810", "Xiaomi Corp.", "18", 90_000_000, "11", 200),
    ]
)

_UNIVERSES: Final[Mapping[Market, Mapping[str, Instrument]]] = MappingProxyType(
    {Market.US: UNIVERSE_US, Market.HK: UNIVERSE_HK}
)

# Slow day-level sinusoids (period in sessions, amplitude in log price).
_DAILY_WAVES: Final = ((17.0, 0.025), (53.0, 0.05), (181.0, 0.08))
_DAILY_NOISE: Final = 0.006
_INTRADAY_AMPLITUDE: Final = 0.003
_VOLUME_U_SHAPE: Final = 0.6  # < 1 keeps cumulative volume increasing
_QUOTE_SIZE_LOTS: Final = 20
_TWO_DP: Final = Decimal("0.01")


def universe_for(market: Market) -> Mapping[str, Instrument]:
    """The simulated exchange's listed instruments for `market`, by symbol."""
    return _UNIVERSES[market]


def _uniforms(key: str) -> tuple[float, ...]:
    """Sixteen floats in [0, 1) from a stable hash of `key` (never Python's salted hash())."""
    digest = hashlib.blake2b(key.encode(), digest_size=64).digest()
    return tuple(v / 2.0**32 for v in struct.unpack(">16I", digest))


def _log_close(seed: int, symbol: str, base: float, day: date, n: int) -> float:
    """log of the closing price of `day`, the `n`-th session of the calendar."""
    phases = _uniforms(f"{seed}:{symbol}")
    log_price = math.log(base)
    for (period, amplitude), phase in zip(_DAILY_WAVES, phases, strict=False):
        log_price += amplitude * math.sin(2.0 * math.pi * (n / period + phase))
    return log_price + _DAILY_NOISE * (2.0 * _uniforms(f"{seed}:{symbol}:{day}")[0] - 1.0)


def _progress(profile: MarketProfile, day: date, at: datetime) -> float:
    """Share of `day`'s trading time elapsed at `at`, clamped to [0, 1]."""
    total = 0.0
    done = 0.0
    for start, end in profile.session_intervals(day):
        length = (end - start).total_seconds()
        total += length
        done += min(max((at - start).total_seconds(), 0.0), length)
    return done / total if total > 0 else 1.0


@dataclass(frozen=True, slots=True)
class _State:
    day: date
    progress: float
    prev_close: float
    mid: float
    day_hash: tuple[float, ...]


def _state(seed: int, instrument: Instrument, at: datetime, profile: MarketProfile) -> _State:
    day = profile.latest_session(at)
    prev = profile.previous_session(day)
    base = float(instrument.base_price)
    n = profile.session_number(day)
    log_prev = _log_close(seed, instrument.symbol, base, prev, n - 1)
    log_close = _log_close(seed, instrument.symbol, base, day, n)
    f = _progress(profile, day, at)
    h = _uniforms(f"{seed}:{instrument.symbol}:{day}")
    # h[0]: closing noise, h[1]: relative volume, h[2..10]: amplitude, frequency, phase of three waves
    wiggle = sum(h[2 + j] * math.sin(2.0 * math.pi * ((1.0 + 4.0 * h[5 + j]) * f + h[8 + j])) for j in range(3))
    log_mid = log_prev + f * (log_close - log_prev) + _INTRADAY_AMPLITUDE * math.sin(math.pi * f) * wiggle
    return _State(day, f, math.exp(log_prev), math.exp(log_mid), h)


def _tick_price(profile: MarketProfile, value: float, rounding: str) -> Decimal:
    price = profile.round_to_tick(Decimal(value), rounding)
    return price if price > 0 else profile.tick_for(Decimal(0))


def quote_at(seed: int, instrument: Instrument, at: datetime, profile: MarketProfile) -> Quote:
    """The simulated quote of `instrument` at `at`; the same inputs give the same quote, bit for bit."""
    s = _state(seed, instrument, at, profile)
    return _quote(seed, instrument, at, profile, s.day, s.mid)


def pinned_quote(seed: int, instrument: Instrument, at: datetime, profile: MarketProfile, last: Decimal) -> Quote:
    """The quote of `instrument` at `at` when its last price is pinned at `last` (a positive price on the tick):
    the model's spread and sizes around that price instead of the model's path."""
    return _quote(seed, instrument, at, profile, profile.latest_session(at), float(last))


def _quote(seed: int, instrument: Instrument, at: datetime, profile: MarketProfile, day: date, mid: float) -> Quote:
    half = mid * float(instrument.spread_bps) / 20_000.0
    bid = _tick_price(profile, mid - half, ROUND_FLOOR)
    ask = _tick_price(profile, mid + half, ROUND_CEILING)
    if ask <= bid:
        ask = bid + profile.tick_for(bid)
    last = min(max(_tick_price(profile, mid, ROUND_HALF_EVEN), bid), ask)
    minute = int(at.timestamp()) // 60
    sizes = _uniforms(f"{seed}:{instrument.symbol}:{day}:{minute}")
    unit = instrument.lot if instrument.lot > 1 else Decimal(100)
    return Quote(
        symbol=instrument.symbol,
        bid=bid,
        ask=ask,
        last=last,
        bid_size=unit * (1 + int(sizes[0] * _QUOTE_SIZE_LOTS)),
        ask_size=unit * (1 + int(sizes[1] * _QUOTE_SIZE_LOTS)),
        at=at,
    )


def _volume_share(f: float) -> float:
    """Cumulative share of a day's volume traded at progress `f`: heavier near the open and the close."""
    return f + _VOLUME_U_SHAPE * math.sin(2.0 * math.pi * f) / (2.0 * math.pi)


def day_stats(seed: int, instrument: Instrument, at: datetime, profile: MarketProfile) -> DayStats:
    """Today's statistics at `at`; "today" is the latest session that has opened (so a previous day's
    full-day figures before the next open)."""
    s = _state(seed, instrument, at, profile)
    prev_close = _tick_price(profile, s.prev_close, ROUND_HALF_EVEN)
    last = _quote(seed, instrument, at, profile, s.day, s.mid).last
    change_pct = ((last - prev_close) / prev_close * 100).quantize(_TWO_DP, ROUND_HALF_EVEN)
    factor = 0.5 + 2.5 * s.day_hash[1] ** 2  # relative volume of the day, 0.5 to 3.0
    volume = Decimal(int(instrument.avg_daily_volume * factor * _volume_share(s.progress)))
    return DayStats(
        prev_close=prev_close,
        last=last,
        change_pct=change_pct,
        volume=volume,
        relative_volume=Decimal(factor).quantize(_TWO_DP, ROUND_HALF_EVEN),
    )


def scan_row(
    seed: int, instrument: Instrument, at: datetime, profile: MarketProfile, quote: Quote | None = None
) -> ScanRow:
    """The scanner's row of `instrument` at `at`: the last price, bid and ask of `quote` (one around a pinned
    price, say; else the model's), the previous close, today's open (the previous close: the model's days open
    where the last one closed, without a gap), today's volume so far and the instrument's average daily volume."""
    stats = day_stats(seed, instrument, at, profile)
    q = quote if quote is not None else quote_at(seed, instrument, at, profile)
    return ScanRow(
        symbol=instrument.symbol,
        last=q.last,
        prev_close=stats.prev_close,
        open=stats.prev_close,
        volume=stats.volume,
        avg_volume=Decimal(instrument.avg_daily_volume),
        bid=q.bid,
        ask=q.ask,
    )
