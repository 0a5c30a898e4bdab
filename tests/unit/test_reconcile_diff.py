"""Reconciliation as a pure function: diff(book, broker, in_flight, tolerance) -> SyncPlan, and the outage guard."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.models import BrokerPosition, Position
from catalyst_mcp.reconcile.diff import PHANTOM_REASON, SIDE_REASON, diff, looks_like_outage
from catalyst_mcp.reconcile.plan import (
    Change,
    ChangeKind,
    Close,
    FoldSource,
    InFlight,
    Insert,
    Skipped,
    SyncPlan,
    Update,
)

D = Decimal
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
SHARE, MIN_POSITIONS = D("0.5"), 3  # the defaults of SyncSettings
US = Market.US

_ids = iter(range(1, 1_000_000))


def held(symbol: str, signed_quantity: str | Decimal, avg: str = "100", position_id: int | None = None) -> Position:
    """A book position from a signed quantity (negative = short)."""
    q = D(signed_quantity)
    side = PositionSide.SHORT if q < 0 else PositionSide.LONG
    return Position(position_id or next(_ids), symbol, side, abs(q), D(avg), None, None, NOW)


def at_broker(symbol: str, signed_quantity: str | Decimal, avg: str = "100") -> BrokerPosition:
    return BrokerPosition(symbol, D(signed_quantity), D(avg))


def us(book: list[Position], broker: list[BrokerPosition], *flying: InFlight, tolerance: str = "0.0001") -> SyncPlan:
    return diff(book, broker, flying, D(tolerance), market=US)


def closing(book_size: int, phantoms: int) -> SyncPlan:
    """A real plan for a book of ``book_size`` positions of which the broker lacks ``phantoms``."""
    symbols = [f"S{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(book_size)]
    plan = us([held(s, "10") for s in symbols], [at_broker(s, "10") for s in symbols[phantoms:]])
    assert len(plan.of(ChangeKind.PHANTOM)) == phantoms
    return plan


# --- the five kinds --------------------------------------------------------------------------------------


def test_a_position_the_broker_does_not_hold_is_a_phantom_closed_without_a_price() -> None:
    aapl = held("AAPL", "60", position_id=7)
    plan = us([aapl], [])
    assert plan.changes == (Change(ChangeKind.PHANTOM, "AAPL", D(60), D(0), D(100), None),)
    assert plan.closes == (Close(7, "AAPL", PositionSide.LONG, D(60), PHANTOM_REASON),)
    assert plan.updates == () and plan.inserts == ()
    assert plan.book_size == 1


def test_a_position_only_the_broker_holds_is_missing_and_inserted_at_its_price() -> None:
    plan = us([], [at_broker("MSFT", "25", avg="410.5")])
    assert plan.changes == (Change(ChangeKind.MISSING, "MSFT", D(0), D(25), None, D("410.5")),)
    assert plan.inserts == (Insert("MSFT", PositionSide.LONG, D(25), D("410.5")),)
    assert plan.book_size == 0


def test_a_short_only_the_broker_holds_is_inserted_as_a_short() -> None:
    plan = us([], [at_broker("TSLA", "-5")])
    assert plan.of(ChangeKind.MISSING)[0].side is PositionSide.SHORT
    assert plan.inserts == (Insert("TSLA", PositionSide.SHORT, D(5), D(100)),)


def test_a_different_quantity_takes_the_brokers_quantity_and_price_in_place() -> None:
    plan = us([held("AAPL", "60", avg="100", position_id=3)], [at_broker("AAPL", "34", avg="101.25")])
    assert plan.changes == (Change(ChangeKind.QUANTITY, "AAPL", D(60), D(34), D(100), D("101.25")),)
    assert plan.updates == (Update(3, PositionSide.LONG, D(60), "AAPL", D(34), D("101.25")),)
    assert plan.closes == () and plan.inserts == ()


def test_a_long_that_is_short_at_the_broker_is_a_side_change_closed_and_reopened() -> None:
    plan = us([held("AAPL", "10", position_id=4)], [at_broker("AAPL", "-10", avg="99")])
    (change,) = plan.changes
    assert change.kind is ChangeKind.SIDE
    assert (change.book_quantity, change.broker_quantity, change.side) == (D(10), D(-10), PositionSide.SHORT)
    assert plan.closes == (Close(4, "AAPL", PositionSide.LONG, D(10), SIDE_REASON),)
    assert plan.inserts == (Insert("AAPL", PositionSide.SHORT, D(10), D(99)),)


def test_a_short_that_is_long_at_the_broker_is_a_side_change_to_long() -> None:
    (change,) = us([held("AAPL", "-3")], [at_broker("AAPL", "3")]).changes
    assert change.kind is ChangeKind.SIDE and change.side is PositionSide.LONG


@pytest.mark.parametrize(
    ("book_avg", "broker_avg", "tolerance", "drifted"),
    [
        ("100", "100.02", "0.0001", True),  # 2 bp apart, 1 bp allowed
        ("100", "100.01", "0.0001", False),  # exactly at the tolerance is not beyond it
        ("100", "100.005", "0.0001", False),
        ("100", "100.0001", "0", True),  # zero tolerance: any difference
        ("190.123456", "190.1235", "0.0001", False),  # a broker rounding to 4 places
        ("100", "0", "0.0001", False),  # the broker reports no price: ours stands
    ],
)
def test_an_average_price_apart_by_more_than_the_tolerance_is_drift(
    book_avg: str, broker_avg: str, tolerance: str, drifted: bool
) -> None:
    plan = us(
        [held("KO", "20", avg=book_avg, position_id=5)], [at_broker("KO", "20", avg=broker_avg)], tolerance=tolerance
    )
    if drifted:
        assert plan.changes == (Change(ChangeKind.PRICE, "KO", D(20), D(20), D(book_avg), D(broker_avg)),)
        assert plan.updates == (Update(5, PositionSide.LONG, D(20), "KO", D(20), D(broker_avg)),)
    else:
        assert plan.is_empty


def test_a_quantity_change_at_a_broker_without_a_price_keeps_the_books_price() -> None:
    plan = us([held("KO", "20", avg="61.5", position_id=9)], [at_broker("KO", "15", avg="0")])
    assert plan.updates == (Update(9, PositionSide.LONG, D(20), "KO", D(15), D("61.5")),)


def test_zero_quantity_broker_rows_count_as_absent() -> None:
    plan = us([held("AAPL", "10")], [at_broker("AAPL", "0"), at_broker("MSFT", "0.000")])
    assert [(c.kind, c.symbol) for c in plan.changes] == [(ChangeKind.PHANTOM, "AAPL")]


def test_equal_books_give_an_empty_plan() -> None:
    book = [held("AAPL", "10"), held("TSLA", "-4"), held("BRK.B", "3")]
    broker = [at_broker("BRK.B", "3.00"), at_broker("AAPL", "10"), at_broker("TSLA", "-4")]
    plan = us(book, broker)
    assert plan.is_empty and not plan.has_operations
    assert plan.book_size == 3


def test_fractional_quantities_are_compared_exactly() -> None:
    plan = us(
        [held("AAPL", "0.5"), held("MSFT", "1.25")],
        [at_broker("AAPL", "0.50"), at_broker("MSFT", "1.2500001"), at_broker("NVDA", "0.001")],
    )
    assert [(c.kind, c.symbol, c.broker_quantity) for c in plan.changes] == [
        (ChangeKind.QUANTITY, "MSFT", D("1.2500001")),
        (ChangeKind.MISSING, "NVDA", D("0.001")),
    ]


def test_a_plan_lists_the_changes_of_one_kind_on_request() -> None:
    plan = us(
        [held("AAA", "1"), held("BBB", "2"), held("DDD", "5")],
        [at_broker("BBB", "3"), at_broker("CCC", "4"), at_broker("DDD", "-5")],
    )
    assert [c.symbol for c in plan.of(ChangeKind.PHANTOM)] == ["AAA"]
    assert [c.symbol for c in plan.of(ChangeKind.QUANTITY)] == ["BBB"]
    assert [c.symbol for c in plan.of(ChangeKind.MISSING)] == ["CCC"]
    assert [c.symbol for c in plan.of(ChangeKind.SIDE)] == ["DDD"]


# --- symbols, duplicates, in flight ----------------------------------------------------------------------


def test_us_symbols_are_compared_after_normalising_both_sides() -> None:
    plan = us(
        [held("brk.b", "3", position_id=11), held("AAPL", "1")], [at_broker("BRK-B", "3"), at_broker("aapl ", "1")]
    )
    assert plan.changes == ()
    # The book row stored under a non-canonical spelling is renamed, nothing else.
    assert plan.updates == (Update(11, PositionSide.LONG, D(3), "BRK.B", D(3), D(100)),)
    assert [(f.symbol, f.source, f.spellings) for f in plan.folds] == [("BRK.B", FoldSource.BOOK, ("brk.b",))]


def test_two_book_rows_of_one_symbol_are_folded_into_the_canonical_row() -> None:
    canonical, other = held("AAPL", "6", avg="100", position_id=1), held("aapl", "4", avg="110", position_id=2)
    plan = us([other, canonical], [at_broker("AAPL", "10", avg="104")])
    assert plan.changes == ()  # 6 + 4 at 104 on average is what the broker holds
    assert plan.closes == (Close(2, "aapl", PositionSide.LONG, D(4), "sync: duplicate row of AAPL, folded"),)
    assert plan.updates == (Update(1, PositionSide.LONG, D(6), "AAPL", D(10), D(104)),)
    (fold,) = plan.folds
    assert (fold.symbol, fold.source, fold.quantity) == ("AAPL", FoldSource.BOOK, D(10))
    assert plan.book_size == 1


def test_a_broker_reporting_one_symbol_twice_is_summed_and_reported() -> None:
    plan = us([held("AAPL", "10", avg="100")], [at_broker("AAPL", "4", avg="100"), at_broker("aapl", "6", avg="100")])
    assert plan.changes == () and not plan.has_operations
    (fold,) = plan.folds
    assert (fold.source, fold.spellings, fold.quantity) == (FoldSource.BROKER, ("AAPL", "aapl"), D(10))


def test_a_symbol_with_an_order_in_flight_is_left_alone_and_reported() -> None:
    plan = us(
        [held("AAPL", "10"), held("MSFT", "5")],
        [at_broker("MSFT", "5"), at_broker("NVDA", "7")],
        InFlight("AAPL", "cat-1"),
        InFlight("nvda", "cat-2"),
        InFlight("AAPL", "cat-1"),  # seen both as working and as refreshed: listed once
    )
    assert plan.is_empty and not plan.has_operations
    assert plan.skipped == (Skipped("AAPL", D(10), D(0), ("cat-1",)), Skipped("NVDA", D(0), D(7), ("cat-2",)))
    assert plan.book_size == 2


def test_symbols_that_are_not_of_this_market_are_left_alone_and_reported() -> None:
    plan = us([held("AAPL", "1")], [at_broker("AAPL", "1"), at_broker("AAPL240119C00190000", "2")])
    assert plan.is_empty
    assert plan.unrecognised == ("AAPL240119C00190000",)


def test_a_refused_plan_keeps_its_findings_but_no_changes() -> None:
    plan = closing(4, 3).without_changes()
    assert plan.is_empty and plan.book_size == 4


# --- looks_like_outage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("book_size", "phantoms", "outage"),
    [
        (4, 3, True),  # 75 % of the book, and three positions
        (2, 2, True),  # all of it: an empty answer is an outage at any book size
        (1, 1, True),
        (2, 1, False),  # half of two: neither all, nor three
        (6, 3, False),  # exactly half is not more than half
        (6, 4, True),
        (3, 3, True),
        (10, 2, False),
        (100, 50, False),
        (100, 51, True),
    ],
)
def test_an_outage_is_closing_the_whole_book_or_more_than_half_and_at_least_three_positions(
    book_size: int, phantoms: int, outage: bool
) -> None:
    assert looks_like_outage(closing(book_size, phantoms), SHARE, MIN_POSITIONS) is outage


def test_an_empty_book_never_looks_like_an_outage() -> None:
    assert looks_like_outage(us([], [at_broker("AAPL", "5")]), SHARE, MIN_POSITIONS) is False
    assert looks_like_outage(SyncPlan((), 0), SHARE, 1) is False


def test_quantity_side_price_and_missing_changes_do_not_count_towards_an_outage() -> None:
    book = [held(s, "10") for s in ("A", "B", "C", "D")]
    broker = [at_broker("A", "1"), at_broker("B", "-10"), at_broker("C", "10", avg="150"), at_broker("D", "2")]
    assert looks_like_outage(us(book, [*broker, at_broker("E", "1")]), SHARE, MIN_POSITIONS) is False


def test_the_outage_share_and_minimum_are_configurable() -> None:
    plan = closing(4, 2)
    assert looks_like_outage(plan, D("0.25"), 2) is True
    assert looks_like_outage(plan, D("0.5"), 2) is False
    assert looks_like_outage(plan, D("0.25"), 3) is False
