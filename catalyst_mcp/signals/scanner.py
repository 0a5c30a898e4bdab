"""The market scanner: filters, scores and tiers over one row per symbol — pure, Decimal, no clock, no I/O.

A row is what a market-data source knows of a symbol today: last price, previous close, today's open and
volume, average daily volume, bid and ask. Each row is measured (percentages are percent, 2 means 2 %):

- ``change_pct``: last vs the previous close (momentum);
- ``gap_pct``: today's open vs the previous close (null without an open);
- ``relative_volume``: today's volume ÷ the volume usually traded by this time of the session (the average
  daily volume × ``expected_volume_share`` of the session fraction elapsed; the whole day without one);
- ``spread_pct``: (ask − bid) ÷ mid (null without both sides);
- ``score`` = change_pct + gap weight × gap_pct + volume weight × (min(relative_volume, cap) − 1).

Each is rounded to 2 places (half-even) before anything compares it, so a threshold and the value shown agree.
Filters drop what should not be traded (too cheap or dear, too thin, too wide a spread). The tiers — ordered,
each looser than the one before — are tried in order; the first under which any filtered row qualifies is
used, its rows ranked by score (then change, then symbol), best first. ``ScanResult`` says which tier was used,
or that none found anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Final

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market

_TWO_DP: Final = Decimal("0.01")
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)

# The share of a day's volume usually traded once a fraction of the session has passed: a U shape, busy at the
# open and the close and quiet at midday, linear between these (fraction, cumulative share) knots.
VOLUME_CURVE: Final = tuple(
    (Decimal(f), Decimal(s))
    for f, s in (
        ("0", "0"),
        ("0.05", "0.08"),
        ("0.1", "0.16"),
        ("0.2", "0.29"),
        ("0.3", "0.39"),
        ("0.5", "0.5"),
        ("0.7", "0.61"),
        ("0.8", "0.71"),
        ("0.9", "0.84"),
        ("0.95", "0.92"),
        ("1", "1"),
    )
)
# Below this expected share (the first minutes of a session) relative volume is measured against it, so a
# handful of opening trades is not read as a huge multiple.
MIN_VOLUME_SHARE: Final = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class ScanRow:
    """What a market-data source knows of one symbol today. Prices in the market's currency, volumes in shares."""

    symbol: str
    last: Decimal
    prev_close: Decimal
    open: Decimal | None  # today's opening price; None before the first trade
    volume: Decimal  # today's, so far
    avg_volume: Decimal  # a typical day's
    bid: Decimal | None = None
    ask: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ScanCandidate:
    """A measured row. ``price`` is the last price."""

    symbol: str
    price: Decimal
    change_pct: Decimal
    gap_pct: Decimal | None
    volume: Decimal
    relative_volume: Decimal
    spread_pct: Decimal | None
    score: Decimal


@dataclass(frozen=True, slots=True)
class ScanFilters:
    """What a row must be to be ranked at all. Turnover is the average daily volume × the last price."""

    min_price: Decimal = _ZERO
    max_price: Decimal | None = None
    min_avg_volume: Decimal = _ZERO
    min_avg_turnover: Decimal = _ZERO
    max_spread_pct: Decimal | None = None  # a row without both sides of a quote passes

    def admits(self, row: ScanRow, measured: ScanCandidate) -> bool:
        price = measured.price
        if price < self.min_price or (self.max_price is not None and price > self.max_price):
            return False
        if row.avg_volume < self.min_avg_volume or row.avg_volume * price < self.min_avg_turnover:
            return False
        spread = measured.spread_pct
        return self.max_spread_pct is None or spread is None or spread <= self.max_spread_pct


@dataclass(frozen=True, slots=True)
class ScanTier:
    """Thresholds a filtered row must meet (each inclusive; None: no threshold)."""

    name: str
    min_change_pct: Decimal | None = None
    min_relative_volume: Decimal | None = None
    min_gap_pct: Decimal | None = None

    def admits(self, c: ScanCandidate) -> bool:
        if self.min_change_pct is not None and c.change_pct < self.min_change_pct:
            return False
        if self.min_relative_volume is not None and c.relative_volume < self.min_relative_volume:
            return False
        return self.min_gap_pct is None or (c.gap_pct is not None and c.gap_pct >= self.min_gap_pct)

    @property
    def thresholds(self) -> tuple[Decimal | None, ...]:
        return (self.min_change_pct, self.min_relative_volume, self.min_gap_pct)

    def no_stricter_than(self, other: ScanTier) -> bool:
        """Every row ``other`` admits, this tier admits too: each threshold absent or at most the other's."""
        return all(
            mine is None or (theirs is not None and mine <= theirs)
            for mine, theirs in zip(self.thresholds, other.thresholds, strict=True)
        )

    def describe(self) -> str:
        parts = [
            f"{label} ≥ {plain(value)}{unit}"
            for label, value, unit in (
                ("change", self.min_change_pct, " %"),
                ("relative volume", self.min_relative_volume, ""),
                ("gap", self.min_gap_pct, " %"),
            )
            if value is not None
        ]
        return ", ".join(parts) if parts else "no threshold"


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    gap: Decimal = Decimal("0.5")  # per percent of gap
    volume: Decimal = Decimal("0.5")  # per unit of relative volume above 1
    volume_cap: Decimal = Decimal(5)  # relative volume counts up to this


@dataclass(frozen=True, slots=True)
class ScanCriteria:
    """Filters, tiers (strictest first, each looser than the one before) and score weights."""

    filters: ScanFilters
    tiers: tuple[ScanTier, ...]
    weights: ScoreWeights = field(default_factory=ScoreWeights)

    def __post_init__(self) -> None:
        check_tiers(self.tiers)


def check_tiers(tiers: Sequence[ScanTier]) -> None:
    """Raise ValueError (one line) unless the tiers are named uniquely and each is looser than the one before."""
    if not tiers:
        raise ValueError("a scan needs at least one tier")
    names = [t.name for t in tiers]
    if any(not name.strip() for name in names) or len(set(names)) != len(names):
        raise ValueError(f"tier names must be present and distinct, got {names}")
    for earlier, later in pairwise(tiers):
        if not later.no_stricter_than(earlier) or later.thresholds == earlier.thresholds:
            raise ValueError(
                f"tier {later.name!r} ({later.describe()}) is not looser than tier {earlier.name!r}"
                f" ({earlier.describe()}) before it: each tier must lower or drop a threshold, raising none"
            )


@dataclass(frozen=True, slots=True)
class ScanResult:
    tier: ScanTier | None  # the tier used; None when no tier found anything
    level: int | None  # its place, 1 the first (strictest)
    tier_count: int
    candidates: tuple[ScanCandidate, ...]  # the best `limit` of those qualified, best first
    considered: int  # distinct symbols in the rows
    passed_filters: int
    qualified: int  # rows that met the tier's thresholds, before the limit

    def describe(self) -> str:
        """One line: which tier was used and how many got through."""
        passed = f"{self.passed_filters} of {self.considered} symbols passed the filters"
        if self.tier is None:
            return f"no tier found anything: {passed}, none met the loosest of the {self.tier_count} tiers"
        where = f"tier {self.level} of {self.tier_count} ({self.tier.name}: {self.tier.describe()})"
        return f"{where}: {self.qualified} qualified; {passed}"


def _round(value: Decimal) -> Decimal:
    return value.quantize(_TWO_DP, ROUND_HALF_EVEN)


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    return _round(part / whole * _HUNDRED)


def _positive(value: Decimal | None) -> bool:
    return value is not None and value.is_finite() and value > 0


def expected_volume_share(fraction: Decimal) -> Decimal:
    """The share of a day's volume usually traded when ``fraction`` (0 to 1) of the session has passed."""
    f = min(max(fraction, _ZERO), _ONE)
    for (f0, s0), (f1, s1) in pairwise(VOLUME_CURVE):
        if f <= f1:
            return s0 + (s1 - s0) * (f - f0) / (f1 - f0)
    return _ONE


def relative_volume(volume: Decimal, avg_volume: Decimal, session_fraction: Decimal | None = None) -> Decimal:
    """Today's volume ÷ what a typical day has traded by ``session_fraction`` of the session (by the close
    without one), 2 places; 0 without an average or a volume."""
    if not (_positive(avg_volume) and volume.is_finite() and volume > 0):
        return _ZERO
    share = _ONE if session_fraction is None else max(expected_volume_share(session_fraction), MIN_VOLUME_SHARE)
    return _round(volume / (avg_volume * share))


def spread_pct(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """(ask − bid) ÷ mid in percent, 2 places; None without both sides or with a crossed quote."""
    if bid is None or ask is None or not (_positive(bid) and _positive(ask)) or ask < bid:
        return None
    return _round((ask - bid) / ((bid + ask) / 2) * _HUNDRED)


def session_fraction(intervals: Sequence[tuple[datetime, datetime]], at: datetime) -> Decimal:
    """The share (0 to 1) of a session's trading time — its intervals, e.g. HK's morning and afternoon — elapsed
    at ``at``; 1 for a session without trading time."""
    micro = timedelta(microseconds=1)
    total = done = 0
    for start, end in intervals:
        length = (end - start) // micro
        total += length
        done += min(max((at - start) // micro, 0), length)
    return _ONE if total <= 0 else Decimal(done) / Decimal(total)


def measure(row: ScanRow, weights: ScoreWeights, fraction: Decimal | None = None) -> ScanCandidate | None:
    """The row's measures and score; None for a row without a usable price (last or previous close)."""
    if not (_positive(row.last) and _positive(row.prev_close)):
        return None
    change = _pct(row.last - row.prev_close, row.prev_close)
    gap = _pct(row.open - row.prev_close, row.prev_close) if row.open is not None and _positive(row.open) else None
    volume = row.volume if row.volume.is_finite() and row.volume > 0 else _ZERO
    rvol = relative_volume(volume, row.avg_volume, fraction)
    score = change + weights.gap * (gap or _ZERO) + weights.volume * (min(rvol, weights.volume_cap) - _ONE)
    return ScanCandidate(
        symbol=row.symbol,
        price=row.last,
        change_pct=change,
        gap_pct=gap,
        volume=volume,
        relative_volume=rvol,
        spread_pct=spread_pct(row.bid, row.ask),
        score=_round(score),
    )


def _order(c: ScanCandidate) -> tuple[Decimal, Decimal, str]:
    return (-c.score, -c.change_pct, c.symbol)


def rank(rows: Iterable[ScanRow], criteria: ScanCriteria, limit: int, *, fraction: Decimal | None = None) -> ScanResult:
    """Measure and filter the rows (a symbol's first row counts, a repeat is ignored), then use the first tier
    under which any row qualifies: its best ``limit`` rows, best first. ``fraction`` is the share of the
    session elapsed (for relative volume); None measures against a whole day."""
    if limit < 0:
        raise ValueError(f"limit must be zero or more, got {limit}")
    seen: set[str] = set()
    passed: list[ScanCandidate] = []
    for row in rows:
        if row.symbol in seen:
            continue
        seen.add(row.symbol)
        measured = measure(row, criteria.weights, fraction)
        if measured is not None and criteria.filters.admits(row, measured):
            passed.append(measured)
    count = len(criteria.tiers)
    for level, tier in enumerate(criteria.tiers, start=1):
        qualified = sorted((c for c in passed if tier.admits(c)), key=_order)
        if qualified:
            return ScanResult(tier, level, count, tuple(qualified[:limit]), len(seen), len(passed), len(qualified))
    return ScanResult(None, None, count, (), len(seen), len(passed), 0)


def _d(value: str) -> Decimal:
    return Decimal(value)


# US: dollars, single shares. Large and mid caps move 3 % on news; a dollar minimum keeps penny stocks out.
_US: Final = ScanCriteria(
    filters=ScanFilters(
        min_price=_d("1"),
        min_avg_volume=_d("300000"),
        min_avg_turnover=_d("2000000"),
        max_spread_pct=_d("0.5"),
    ),
    tiers=(
        ScanTier("strong", min_change_pct=_d("3"), min_relative_volume=_d("2")),
        ScanTier("moderate", min_change_pct=_d("1.5"), min_relative_volume=_d("1.5")),
        ScanTier("mild", min_change_pct=_d("0.5"), min_relative_volume=_d("1")),
        ScanTier("any", min_change_pct=_d("0")),
    ),
)

# HK: Hong Kong dollars, board lots. Many liquid names trade below HKD 20 with ticks of 0.1–0.5 %, so the
# spread limit is wider; liquidity is judged by turnover (HKD 10 million a day) more than by shares. Blue chips
# move a little less than US large caps, so the tiers start lower.
_HK: Final = ScanCriteria(
    filters=ScanFilters(
        min_price=_d("1"),
        min_avg_volume=_d("100000"),
        min_avg_turnover=_d("10000000"),
        max_spread_pct=_d("1"),
    ),
    tiers=(
        ScanTier("strong", min_change_pct=_d("2.5"), min_relative_volume=_d("2")),
        ScanTier("moderate", min_change_pct=_d("1.2"), min_relative_volume=_d("1.5")),
        ScanTier("mild", min_change_pct=_d("0.4"), min_relative_volume=_d("1")),
        ScanTier("any", min_change_pct=_d("0")),
    ),
)


def default_criteria(market: Market) -> ScanCriteria:
    """The scanner's defaults for ``market`` (settings may override any part)."""
    return _US if market is Market.US else _HK
