"""Symbols and lots in reconciliation: HK codes in every spelling, share-class separators, board lots."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import BrokerPosition, Position
from catalyst_mcp.markets.lots import HK_BOARD_LOTS, lot_lookup, table_lot
from catalyst_mcp.markets.symbols import canonical_symbol, normalise_symbol
from catalyst_mcp.reconcile.describe import describe_changes, describe_rest
from catalyst_mcp.reconcile.diff import diff
from catalyst_mcp.reconcile.plan import ChangeKind, FoldSource, Update

D = Decimal
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
HK = Market.HK
SPELLINGS = ["700", "0700", "00700", "HK.00700", "0700.HK", "hk.700", " 700.hk "]


def held(symbol: str, quantity: str, position_id: int = 1, avg: str = "380") -> Position:
    q = D(quantity)
    side = PositionSide.SHORT if q < 0 else PositionSide.LONG
    return Position(position_id, symbol, side, abs(q), D(avg), None, None, NOW)


def at_broker(symbol: str, quantity: str, avg: str = "380") -> BrokerPosition:
    return BrokerPosition(symbol, D(quantity), D(avg))


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_hk_spelling_of_tencent_is_00700(spelling: str) -> None:
    assert canonical_symbol(HK, spelling) == "00700"
    assert normalise_symbol(HK, spelling) == "00700"


@pytest.mark.parametrize("raw", ["HK.700.HK", "HK.", "0", "AAPL", "700.HKG", "123456"])
def test_malformed_hk_codes_have_no_canonical_form(raw: str) -> None:
    assert canonical_symbol(HK, raw) is None
    with pytest.raises(InvalidInput):
        normalise_symbol(HK, raw)


@pytest.mark.parametrize("raw", ["BRK.B", "BRK-B", "BRK/B", "brk.b"])
def test_a_us_share_class_may_be_written_with_a_dot_dash_or_slash(raw: str) -> None:
    assert normalise_symbol(Market.US, raw) == "BRK.B"


@pytest.mark.parametrize("book_spelling", SPELLINGS)
@pytest.mark.parametrize("broker_spelling", SPELLINGS)
def test_one_hk_position_in_any_two_spellings_is_neither_phantom_nor_missing(
    book_spelling: str, broker_spelling: str
) -> None:
    plan = diff([held(book_spelling, "300", 5)], [at_broker(broker_spelling, "300")], market=HK)
    assert plan.changes == ()
    canonical_in_book = book_spelling == "00700"
    assert plan.has_operations is not canonical_in_book  # only a rename of the stored spelling
    if not canonical_in_book:
        assert plan.updates == (Update(5, PositionSide.LONG, D(300), "00700", D(300), D(380)),)


def test_the_0670_and_670_of_the_old_system_are_one_position_not_a_phantom_and_a_missing() -> None:
    plan = diff([held("0670", "4000", 8, avg="3.2")], [at_broker("670", "6000", avg="3.3")], market=HK)
    assert [(c.kind, c.symbol) for c in plan.changes] == [(ChangeKind.QUANTITY, "00670")]
    assert plan.closes == () and plan.inserts == ()
    assert plan.updates == (Update(8, PositionSide.LONG, D(4000), "00670", D(6000), D("3.3")),)


def test_a_broker_reporting_one_hk_code_in_two_spellings_is_folded_into_one_position() -> None:
    plan = diff([], [at_broker("700", "100", avg="370"), at_broker("0700.HK", "200", avg="385")], market=HK)
    (change,) = plan.changes
    assert (change.kind, change.symbol, change.broker_quantity, change.broker_avg_price) == (
        ChangeKind.MISSING,
        "00700",
        D(300),
        D(380),
    )
    (fold,) = plan.folds
    assert (fold.source, fold.spellings) == (FoldSource.BROKER, ("700", "0700.HK"))


def test_book_rows_under_two_hk_spellings_fold_into_the_canonical_code() -> None:
    plan = diff(
        [held("700", "100", 1), held("00700", "200", 2)],
        [at_broker("HK.00700", "300")],
        market=HK,
    )
    assert plan.changes == ()
    assert [c.position_id for c in plan.closes] == [1]
    assert plan.updates == (Update(2, PositionSide.LONG, D(200), "00700", D(300), D(380)),)


def test_lots_come_from_the_broker_then_the_table_then_the_market_default() -> None:
    def broker_lot(symbol: str) -> Decimal:
        if symbol == "00700":
            return D(100)
        raise InvalidInput(f"unknown symbol {symbol}")

    lot = lot_lookup(HK, broker_lot)
    assert lot("00700") == 100  # from the broker
    assert lot("00005") == 400 == HK_BOARD_LOTS["00005"]  # from the table
    assert lot("06666") == 100  # the HK default
    assert table_lot(Market.US, "AAPL") == 1


def test_an_odd_lot_at_the_broker_is_taken_and_said() -> None:
    lot = lot_lookup(HK, lambda s: table_lot(HK, s))
    plan = diff([held("00005", "400", avg="65")], [at_broker("5", "650", avg="65")], market=HK, lot_size=lot)
    (change,) = plan.changes
    assert change.lot_size == 400 and change.odd_lot
    (line,) = describe_changes(plan, applied=True) + describe_rest(plan)
    assert line.startswith("00005: book long 400, broker long 650") and "odd lot" in line and "400" in line


def test_whole_lots_are_not_odd() -> None:
    lot = lot_lookup(HK, lambda s: table_lot(HK, s))
    (change,) = diff([], [at_broker("00941", "1500", avg="70")], market=HK, lot_size=lot).changes
    assert change.lot_size == 500 and not change.odd_lot
