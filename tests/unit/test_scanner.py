"""The scanner's pure logic: measures, filters, the score, tiers tried in order (a looser tier never qualifies
fewer rows), the ranking's order, per-market defaults, and relative volume adjusted to the time of day."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.profiles import profile_for
from catalyst_mcp.signals.scanner import (
    MIN_VOLUME_SHARE,
    ScanCriteria,
    ScanFilters,
    ScanRow,
    ScanTier,
    ScoreWeights,
    check_tiers,
    default_criteria,
    expected_volume_share,
    measure,
    rank,
    relative_volume,
    session_fraction,
)

D = Decimal
NO_FILTERS = ScanFilters()
TIERS = (
    ScanTier("strong", min_change_pct=D(3), min_relative_volume=D(2)),
    ScanTier("moderate", min_change_pct=D("1.5"), min_relative_volume=D("1.5")),
    ScanTier("any", min_change_pct=D(0)),
)
CRITERIA = ScanCriteria(NO_FILTERS, TIERS)


def row(
    symbol: str,
    change: str = "0",
    rvol: str = "1",
    *,
    prev: str = "100",
    gap: str | None = "0",
    spread: str | None = "0.02",
    avg: str = "1000000",
) -> ScanRow:
    """A row moving `change` % from `prev` on `rvol` × its average volume (a whole day), opening `gap` % away."""
    p = D(prev)
    last = p * (1 + D(change) / 100)
    opening = None if gap is None else p * (1 + D(gap) / 100)
    bid = ask = None
    if spread is not None:
        bid, ask = last - D(spread) / 2, last + D(spread) / 2
    return ScanRow(symbol, last, p, opening, D(avg) * D(rvol), D(avg), bid, ask)


# --- measures and the score ----------------------------------------------------------------------------


def test_a_row_is_measured_against_its_previous_close_and_its_average_volume() -> None:
    aapl = ScanRow("AAPL", D("103"), D("100"), D("101"), D("2500000"), D("1000000"), D("102.95"), D("103.05"))
    c = measure(aapl, ScoreWeights())

    assert c is not None
    assert (c.change_pct, c.gap_pct, c.relative_volume, c.spread_pct) == (D("3.00"), D("1.00"), D("2.50"), D("0.10"))
    # change + 0.5 × gap + 0.5 × (relative volume − 1)
    assert c.score == D("3.00") + D("0.50") + D("0.75")
    assert (c.price, c.volume) == (D("103"), D("2500000"))


def test_relative_volume_counts_only_up_to_its_cap_in_the_score() -> None:
    capped = measure(row("A", "1", "9"), ScoreWeights())
    at_cap = measure(row("B", "1", "5"), ScoreWeights())
    assert capped is not None and at_cap is not None
    assert capped.relative_volume == D("9.00") and capped.score == at_cap.score == D("3.00")


def test_below_average_volume_lowers_the_score_and_a_missing_open_counts_no_gap() -> None:
    c = measure(row("A", "1", "0.5", gap=None), ScoreWeights())
    assert c is not None and c.gap_pct is None and c.score == D("0.75")


def test_a_row_without_a_usable_price_is_not_measured() -> None:
    assert measure(replace(row("A"), last=D(0)), ScoreWeights()) is None
    assert measure(replace(row("A"), prev_close=D(0)), ScoreWeights()) is None
    assert measure(replace(row("A"), prev_close=D("NaN")), ScoreWeights()) is None


def test_a_quote_without_both_sides_or_crossed_has_no_spread() -> None:
    one_sided = measure(replace(row("A"), ask=None), ScoreWeights())
    crossed = measure(replace(row("A"), bid=D("101"), ask=D("100")), ScoreWeights())
    assert one_sided is not None and one_sided.spread_pct is None
    assert crossed is not None and crossed.spread_pct is None


# --- relative volume and the time of day ---------------------------------------------------------------


def test_the_expected_volume_is_u_shaped_heavier_at_the_open_and_the_close() -> None:
    first_tenth = expected_volume_share(D("0.1"))
    middle_tenth = expected_volume_share(D("0.55")) - expected_volume_share(D("0.45"))
    last_tenth = 1 - expected_volume_share(D("0.9"))
    assert first_tenth > middle_tenth and last_tenth > middle_tenth
    assert expected_volume_share(D(0)) == 0 and expected_volume_share(D(1)) == 1
    assert expected_volume_share(D(-1)) == 0 and expected_volume_share(D(2)) == 1


@given(st.decimals(min_value=0, max_value=1, places=4), st.decimals(min_value=0, max_value=1, places=4))
def test_the_expected_volume_share_never_falls_as_the_session_goes_on(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert expected_volume_share(low) <= expected_volume_share(high)


def test_relative_volume_is_measured_against_what_is_usually_traded_by_now() -> None:
    # a fifth of the way through, a typical day has traded 29 %: 290,000 of 1,000,000 is a normal pace
    assert relative_volume(D(290_000), D(1_000_000), D("0.2")) == D("1.00")
    assert relative_volume(D(290_000), D(1_000_000)) == D("0.29")  # against a whole day
    assert relative_volume(D(580_000), D(1_000_000), D("0.2")) == D("2.00")


def test_in_the_first_minutes_relative_volume_is_measured_against_a_floor() -> None:
    assert relative_volume(D(10_000), D(1_000_000), D(0)) == D(10_000) / (D(1_000_000) * MIN_VOLUME_SHARE)


def test_relative_volume_without_an_average_or_a_volume_is_zero() -> None:
    assert relative_volume(D(1000), D(0)) == 0
    assert relative_volume(D(0), D(1000)) == 0


def test_the_session_fraction_counts_trading_time_only_skipping_the_hk_lunch_break() -> None:
    hk = profile_for(Market.HK)
    hkt = ZoneInfo("Asia/Hong_Kong")
    day = datetime(2026, 11, 25, tzinfo=hkt).date()
    intervals = hk.session_intervals(day)
    at_noon = datetime(2026, 11, 25, 12, 0, tzinfo=hkt)
    at_lunch_end = datetime(2026, 11, 25, 13, 0, tzinfo=hkt)
    assert session_fraction(intervals, at_noon) == session_fraction(intervals, at_lunch_end)
    assert session_fraction(intervals, datetime(2026, 11, 25, 9, 0, tzinfo=hkt)) == 0
    assert session_fraction(intervals, datetime(2026, 11, 25, 17, 0, tzinfo=hkt)) == 1
    morning = intervals[0][1] - intervals[0][0]
    total = sum((end - start for start, end in intervals), timedelta())
    assert session_fraction(intervals, at_noon) == D(morning // timedelta(microseconds=1)) / D(
        total // timedelta(microseconds=1)
    )


# --- filters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        (ScanFilters(min_price=D(5)), {"MID", "DEAR", "THIN", "WIDE"}),
        (ScanFilters(max_price=D(500)), {"CHEAP", "MID", "THIN", "WIDE"}),
        (ScanFilters(min_avg_volume=D(100_000)), {"CHEAP", "MID", "DEAR", "WIDE"}),
        (ScanFilters(min_avg_turnover=D(50_000_000)), {"MID", "DEAR", "WIDE"}),
        (ScanFilters(max_spread_pct=D("0.5")), {"CHEAP", "MID", "DEAR", "THIN"}),
        (ScanFilters(), {"CHEAP", "MID", "DEAR", "THIN", "WIDE"}),
    ],
    ids=["min-price", "max-price", "min-volume", "min-turnover", "max-spread", "none"],
)
def test_each_filter_drops_exactly_the_rows_it_names(filters: ScanFilters, kept: set[str]) -> None:
    rows = [
        row("CHEAP", "1", prev="2", spread="0.001"),  # turnover 2 million
        row("MID", "1", prev="100"),
        row("DEAR", "1", prev="900", spread="0.1"),
        row("THIN", "1", prev="100", avg="50000"),
        row("WIDE", "1", prev="100", spread="2"),
    ]
    result = rank(rows, ScanCriteria(filters, TIERS), limit=10)
    assert {c.symbol for c in result.candidates} == kept
    assert result.passed_filters == len(kept) and result.considered == 5


def test_a_row_without_both_sides_of_a_quote_passes_the_spread_filter() -> None:
    result = rank([row("A", "1", spread=None)], ScanCriteria(ScanFilters(max_spread_pct=D("0.1")), TIERS), 5)
    assert [c.symbol for c in result.candidates] == ["A"]


# --- tiers ---------------------------------------------------------------------------------------------


def test_the_strictest_tier_with_anything_is_used_and_only_its_rows_are_returned() -> None:
    rows = [row("HOT", "4", "3"), row("WARM", "2", "1.6"), row("FLAT", "0", "1"), row("DOWN", "-1", "2")]
    result = rank(rows, CRITERIA, limit=10)
    assert result.tier == TIERS[0] and result.level == 1 and result.tier_count == 3
    assert [c.symbol for c in result.candidates] == ["HOT"]
    assert (result.considered, result.passed_filters, result.qualified) == (4, 4, 1)


def test_when_the_strict_tiers_find_nothing_the_scan_relaxes_and_says_which_tier_it_used() -> None:
    warm = rank([row("WARM", "2", "1.6"), row("FLAT", "0", "1")], CRITERIA, limit=10)
    assert warm.tier is not None and warm.tier.name == "moderate" and warm.level == 2
    assert [c.symbol for c in warm.candidates] == ["WARM"]

    flat = rank([row("FLAT", "0", "1"), row("DOWN", "-1", "2")], CRITERIA, limit=10)
    assert flat.tier is not None and flat.tier.name == "any" and flat.level == 3
    assert [c.symbol for c in flat.candidates] == ["FLAT"]
    assert flat.describe().startswith("tier 3 of 3 (any: change ≥ 0 %): 1 qualified")


def test_when_no_tier_finds_anything_the_scan_says_so() -> None:
    result = rank([row("DOWN", "-1", "2"), row("DOWNER", "-3", "4")], CRITERIA, limit=10)
    assert result.tier is None and result.level is None and result.candidates == ()
    assert (result.considered, result.passed_filters, result.qualified) == (2, 2, 0)
    assert result.describe() == (
        "no tier found anything: 2 of 2 symbols passed the filters, none met the loosest of the 3 tiers"
    )


def test_a_gap_threshold_needs_an_open() -> None:
    tiers = (ScanTier("gappers", min_gap_pct=D(2)), ScanTier("any"))
    result = rank([row("GAP", "3", gap="2.5"), row("NOOPEN", "5", gap=None)], ScanCriteria(NO_FILTERS, tiers), 5)
    assert result.level == 1 and [c.symbol for c in result.candidates] == ["GAP"]


def test_the_limit_cuts_the_candidates_but_not_the_count_of_those_qualified() -> None:
    rows = [row(f"S{i}", str(i), "1") for i in range(1, 8)]
    result = rank(rows, CRITERIA, limit=3)
    assert [c.symbol for c in result.candidates] == ["S7", "S6", "S5"]
    assert result.qualified == 7 and result.level == 3
    assert rank(rows, CRITERIA, limit=0).candidates == ()
    with pytest.raises(ValueError, match="limit"):
        rank(rows, CRITERIA, limit=-1)


def test_a_symbol_listed_twice_is_ranked_once_from_its_first_row() -> None:
    result = rank([row("A", "1"), row("A", "9"), row("B", "2")], CRITERIA, limit=5)
    assert [(c.symbol, c.change_pct) for c in result.candidates] == [("B", D("2.00")), ("A", D("1.00"))]
    assert result.considered == 2


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ((), "at least one tier"),
        ((ScanTier("a", min_change_pct=D(1)), ScanTier("a")), "distinct"),
        ((ScanTier("loose", min_change_pct=D(1)), ScanTier("strict", min_change_pct=D(2))), "not looser"),
        ((ScanTier("one", min_change_pct=D(1)), ScanTier("same", min_change_pct=D(1))), "not looser"),
        ((ScanTier("no-gap"), ScanTier("gap", min_gap_pct=D(1))), "not looser"),
    ],
    ids=["none", "same-name", "stricter", "identical", "adds-a-threshold"],
)
def test_tiers_that_do_not_loosen_in_order_are_refused_in_one_line(tiers: tuple[ScanTier, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        check_tiers(tiers)
    assert "\n" not in str(raised.value)


# --- properties ----------------------------------------------------------------------------------------

percent = st.decimals(min_value=-20, max_value=20, places=2)
rvols = st.decimals(min_value=0, max_value=10, places=2)
rows_strategy = st.lists(
    st.builds(
        lambda i, change, rvol, gap, spread, prev: row(
            f"S{i}", str(change), str(rvol), gap=gap, spread=spread, prev=str(prev)
        ),
        st.integers(0, 40),
        percent,
        rvols,
        st.one_of(st.none(), percent.map(str)),
        st.one_of(st.none(), st.decimals(min_value=0, max_value=5, places=2).map(str)),
        st.decimals(min_value="0.5", max_value=2000, places=2),
    ),
    max_size=30,
)
thresholds = st.one_of(st.none(), st.decimals(min_value=-5, max_value=10, places=1))


@st.composite
def tier_pairs(draw: st.DrawFn) -> tuple[ScanTier, ScanTier]:
    """A tier and a looser one: each threshold lowered or dropped."""
    strict = ScanTier("strict", draw(thresholds), draw(thresholds), draw(thresholds))
    looser = []
    for value in strict.thresholds:
        lowered = None if value is None else draw(st.one_of(st.none(), st.decimals(max_value=value, min_value=-10)))
        looser.append(lowered)
    return strict, ScanTier("loose", *looser)


@settings(max_examples=200, deadline=None)
@given(rows_strategy, tier_pairs())
def test_a_looser_tier_never_qualifies_fewer_rows(rows: list[ScanRow], pair: tuple[ScanTier, ScanTier]) -> None:
    strict, loose = pair
    assert loose.no_stricter_than(strict)
    strict_found = rank(rows, ScanCriteria(NO_FILTERS, (strict,)), limit=100)
    loose_found = rank(rows, ScanCriteria(NO_FILTERS, (loose,)), limit=100)
    assert loose_found.qualified >= strict_found.qualified
    assert {c.symbol for c in strict_found.candidates} <= {c.symbol for c in loose_found.candidates}


@settings(max_examples=200, deadline=None)
@given(rows_strategy, st.integers(0, 12))
def test_the_ranking_is_best_score_first_then_change_then_symbol_and_uses_the_first_tier_with_anything(
    rows: list[ScanRow], limit: int
) -> None:
    result = rank(rows, CRITERIA, limit)
    keys = [(-c.score, -c.change_pct, c.symbol) for c in result.candidates]
    assert keys == sorted(keys) and len(keys) == min(limit, result.qualified)
    assert len({c.symbol for c in result.candidates}) == len(result.candidates)
    if result.level is None:
        assert result.qualified == 0
    else:
        assert result.tier is not None and all(result.tier.admits(c) for c in result.candidates)
        # no stricter tier qualified anything
        for stricter in TIERS[: result.level - 1]:
            assert rank(rows, ScanCriteria(NO_FILTERS, (stricter,)), limit).qualified == 0


@settings(max_examples=100, deadline=None)
@given(rows_strategy)
def test_every_candidate_passes_the_filters_and_the_score_is_its_measures_combined(rows: list[ScanRow]) -> None:
    criteria = default_criteria(Market.US)
    for c in rank(rows, criteria, 100).candidates:
        assert c.price >= criteria.filters.min_price
        assert c.spread_pct is None or c.spread_pct <= D("0.5")
        rvol = min(c.relative_volume, D(5))
        assert c.score == (c.change_pct + D("0.5") * (c.gap_pct or 0) + D("0.5") * (rvol - 1)).quantize(D("0.01"))


# --- per-market defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize("market", [Market.US, Market.HK])
def test_each_market_has_tiers_from_strong_to_any_mover(market: Market) -> None:
    criteria = default_criteria(market)
    assert [t.name for t in criteria.tiers] == ["strong", "moderate", "mild", "any"]
    assert criteria.tiers[-1].min_change_pct == 0 and criteria.tiers[-1].min_relative_volume is None
    assert all(t.min_gap_pct is None for t in criteria.tiers)


def test_hk_defaults_allow_its_wider_tick_spreads_and_judge_liquidity_by_turnover_in_hkd() -> None:
    us, hk = default_criteria(Market.US).filters, default_criteria(Market.HK).filters
    assert hk.max_spread_pct is not None and us.max_spread_pct is not None
    assert hk.max_spread_pct > us.max_spread_pct
    assert hk.min_avg_turnover > us.min_avg_turnover  # HKD, about 7.8 to the dollar
    # a HKD 18 stock quoted one tick (0.02) wide passes in HK; a dollar stock 1 % wide does not in the US
    assert rank([row("01810", "1", prev="18", spread="0.02", avg="90000000")], default_criteria(Market.HK), 5).level
    assert rank([row("X", "1", prev="10", spread="0.1")], default_criteria(Market.US), 5).level is None
