"""Reconciliation as a pure function: diff(book, broker) -> SyncPlan, and the outage guard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import PositionSide
from catalyst_mcp.domain.models import BrokerPosition, Position
from catalyst_mcp.reconcile.diff import Change, ChangeKind, SyncPlan, diff, looks_like_outage

D = Decimal
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
SHARE, MIN_POSITIONS = D("0.5"), 3  # the defaults of SyncSettings


def held(symbol: str, signed_quantity: str | Decimal, avg: str = "100") -> Position:
    """A book position from a signed quantity (negative = short)."""
    q = D(signed_quantity)
    side = PositionSide.SHORT if q < 0 else PositionSide.LONG
    return Position(1, symbol, side, abs(q), D(avg), None, None, NOW)


def at_broker(symbol: str, signed_quantity: str | Decimal, avg: str = "101") -> BrokerPosition:
    return BrokerPosition(symbol, D(signed_quantity), D(avg))


def book_of(quantities: Mapping[str, Decimal]) -> list[Position]:
    return [held(symbol, q) for symbol, q in quantities.items()]


def broker_of(quantities: Mapping[str, Decimal]) -> list[BrokerPosition]:
    return [at_broker(symbol, q) for symbol, q in quantities.items()]


def apply(book: Mapping[str, Decimal], plan: SyncPlan) -> dict[str, Decimal]:
    """What the book holds after a sync carries out the plan (signed quantities)."""
    result = dict(book)
    for change in plan.changes:
        if change.kind is ChangeKind.PHANTOM:
            del result[change.symbol]
        else:
            result[change.symbol] = change.broker_quantity
    return result


def closing(book_size: int, phantoms: int) -> SyncPlan:
    """A real plan for a book of ``book_size`` positions of which the broker lacks ``phantoms``."""
    symbols = [f"S{i:02d}" for i in range(book_size)]
    book = [held(s, "10") for s in symbols]
    broker = [at_broker(s, "10") for s in symbols[phantoms:]]
    plan = diff(book, broker)
    assert len(plan.of(ChangeKind.PHANTOM)) == phantoms
    return plan


# --- diff ------------------------------------------------------------------------------------------------


def test_a_position_the_broker_does_not_hold_is_a_phantom_to_close() -> None:
    plan = diff([held("AAPL", "60")], [])
    assert plan.changes == (Change(ChangeKind.PHANTOM, "AAPL", D(60), D(0), None),)
    assert plan.book_size == 1


def test_a_position_only_the_broker_holds_is_missing_from_the_book() -> None:
    plan = diff([], [at_broker("MSFT", "25", avg="410.5")])
    assert plan.changes == (Change(ChangeKind.MISSING, "MSFT", D(0), D(25), D("410.5")),)
    assert plan.changes[0].side is PositionSide.LONG
    assert plan.book_size == 0


def test_a_short_only_the_broker_holds_is_missing_with_side_short() -> None:
    plan = diff([], [at_broker("TSLA", "-5")])
    assert plan.of(ChangeKind.MISSING)[0].side is PositionSide.SHORT


def test_a_different_quantity_takes_the_brokers_quantity_and_price() -> None:
    plan = diff([held("AAPL", "60", avg="100")], [at_broker("AAPL", "34", avg="101.25")])
    assert plan.changes == (Change(ChangeKind.QUANTITY, "AAPL", D(60), D(34), D("101.25")),)


def test_a_long_in_the_book_that_is_short_at_the_broker_is_a_quantity_change_to_short() -> None:
    plan = diff([held("AAPL", "10")], [at_broker("AAPL", "-10")])
    (change,) = plan.changes
    assert change.kind is ChangeKind.QUANTITY
    assert (change.book_quantity, change.broker_quantity) == (D(10), D(-10))
    assert change.side is PositionSide.SHORT


def test_a_short_in_the_book_that_is_long_at_the_broker_is_a_quantity_change_to_long() -> None:
    (change,) = diff([held("AAPL", "-3")], [at_broker("AAPL", "3")]).changes
    assert change.kind is ChangeKind.QUANTITY
    assert change.book_quantity == D(-3)
    assert change.side is PositionSide.LONG


def test_a_zero_quantity_broker_row_counts_as_absent() -> None:
    plan = diff([held("AAPL", "10")], [at_broker("AAPL", "0"), at_broker("MSFT", "0.000")])
    assert plan.changes == (Change(ChangeKind.PHANTOM, "AAPL", D(10), D(0), None),)


def test_equal_books_give_an_empty_plan() -> None:
    book = [held("AAPL", "10"), held("TSLA", "-4"), held("00700", "300")]
    broker = [at_broker("00700", "300.00"), at_broker("AAPL", "10"), at_broker("TSLA", "-4")]
    plan = diff(book, broker)
    assert plan.is_empty
    assert plan.changes == ()
    assert plan.book_size == 3


def test_fractional_quantities_are_compared_exactly() -> None:
    plan = diff(
        [held("AAPL", "0.5"), held("MSFT", "1.25")],
        [at_broker("AAPL", "0.50"), at_broker("MSFT", "1.2500001"), at_broker("NVDA", "0.001")],
    )
    assert [(c.kind, c.symbol, c.broker_quantity) for c in plan.changes] == [
        (ChangeKind.QUANTITY, "MSFT", D("1.2500001")),
        (ChangeKind.MISSING, "NVDA", D("0.001")),
    ]


def test_a_plan_lists_the_changes_of_one_kind_on_request() -> None:
    plan = diff(
        [held("AAA", "1"), held("BBB", "2")],
        [at_broker("BBB", "3"), at_broker("CCC", "4")],
    )
    assert [c.symbol for c in plan.of(ChangeKind.PHANTOM)] == ["AAA"]
    assert [c.symbol for c in plan.of(ChangeKind.QUANTITY)] == ["BBB"]
    assert [c.symbol for c in plan.of(ChangeKind.MISSING)] == ["CCC"]


# --- looks_like_outage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("book_size", "phantoms", "outage"),
    [
        (4, 3, True),  # 75 % of the book, and three positions
        (2, 2, False),  # all of it, but fewer than three positions
        (6, 3, False),  # exactly half is not more than half
        (6, 4, True),
        (3, 3, True),
        (10, 2, False),
        (100, 50, False),
        (100, 51, True),
    ],
)
def test_an_outage_is_closing_more_than_half_the_book_and_at_least_three_positions(
    book_size: int, phantoms: int, outage: bool
) -> None:
    assert looks_like_outage(closing(book_size, phantoms), SHARE, MIN_POSITIONS) is outage


def test_an_empty_book_never_looks_like_an_outage() -> None:
    plan = diff([], [at_broker("AAPL", "5")])
    assert looks_like_outage(plan, SHARE, MIN_POSITIONS) is False
    assert looks_like_outage(SyncPlan((), 0), SHARE, 1) is False


def test_quantity_changes_and_missing_positions_do_not_count_towards_an_outage() -> None:
    book = [held(s, "10") for s in ("A", "B", "C", "D")]
    broker = [at_broker(s, "1") for s in ("A", "B", "C", "D")] + [at_broker("E", "1")]
    assert looks_like_outage(diff(book, broker), SHARE, MIN_POSITIONS) is False


def test_the_outage_share_and_minimum_are_configurable() -> None:
    plan = closing(4, 2)
    assert looks_like_outage(plan, D("0.25"), 2) is True
    assert looks_like_outage(plan, D("0.5"), 2) is False
    assert looks_like_outage(plan, D("0.25"), 3) is False


# --- properties ------------------------------------------------------------------------------------------

symbols = st.sampled_from(["AAPL", "MSFT", "TSLA", "NVDA", "00700", "BRK.B"])
nonzero = st.decimals(min_value=D("-500"), max_value=D("500"), places=3).filter(lambda q: q != 0)
signed = nonzero | st.just(D(0)) | st.just(D("0.000"))
KIND_BY_PRESENCE = {  # (in the book, at the broker) -> kind
    (True, False): ChangeKind.PHANTOM,
    (False, True): ChangeKind.MISSING,
    (True, True): ChangeKind.QUANTITY,
}


@settings(max_examples=200, deadline=None)
@given(book=st.dictionaries(symbols, nonzero), broker=st.dictionaries(symbols, signed))
def test_applying_the_plan_makes_the_book_equal_the_broker_and_a_second_diff_is_empty(
    book: dict[str, Decimal], broker: dict[str, Decimal]
) -> None:
    plan = diff(book_of(book), broker_of(broker))
    expected = {s: q for s, q in broker.items() if q != 0}

    after = apply(book, plan)
    assert after == expected
    assert plan.book_size == len(book)
    assert len({c.symbol for c in plan.changes}) == len(plan.changes)
    for change in plan.changes:
        assert change.book_quantity == book.get(change.symbol, D(0))
        assert change.broker_quantity == expected.get(change.symbol, D(0))
        assert change.kind is KIND_BY_PRESENCE[(change.symbol in book, change.symbol in expected)]

    assert diff(book_of(after), broker_of(broker)).is_empty
    assert plan.is_empty is (book == expected)
