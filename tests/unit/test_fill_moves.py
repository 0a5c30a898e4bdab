"""How one fill moves a symbol's open position (domain/fills.move_of) — pure, so checked against a plain model
of a signed quantity and its average over any position and fill."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import PositionSide, Side
from catalyst_mcp.domain.fills import move_of
from catalyst_mcp.domain.models import Fill, Position

AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
quantities = st.integers(min_value=1, max_value=1000).map(Decimal)
prices = st.integers(min_value=1, max_value=100_000).map(lambda c: Decimal(c) / 100)


def held(side: PositionSide, quantity: Decimal, avg: Decimal) -> Position:
    return Position(7, "AAPL", side, quantity, avg, None, None, AT)


def fill(side: Side, quantity: Decimal, price: Decimal) -> Fill:
    return Fill("f1", "b1", "AAPL", side, quantity, price, AT)


@given(
    st.none() | st.tuples(st.sampled_from(PositionSide), quantities, prices),
    st.sampled_from(Side),
    quantities,
    prices,
)
def test_a_fill_leaves_the_signed_quantity_moved_by_it_and_realises_only_what_it_closes(
    before: tuple[PositionSide, Decimal, Decimal] | None, side: Side, quantity: Decimal, price: Decimal
) -> None:
    position = None if before is None else held(*before)
    move = move_of(position, fill(side, quantity, price))
    signed_before = Decimal(0) if position is None else position.signed_quantity
    signed_after = signed_before + (quantity if side is Side.BUY else -quantity)

    # What is open afterwards: the resized position, the opened one, or nothing.
    if move.change is not None:
        assert position is not None and move.change == position.position_id and move.close is None
        open_after = position.side, move.quantity
    elif move.opened is not None:
        open_after = move.opened, move.quantity
        assert move.price == price
    else:
        open_after = None
    signed_open = Decimal(0)
    if open_after is not None:
        signed_open = open_after[1] if open_after[0] is PositionSide.LONG else -open_after[1]
    assert signed_open == signed_after
    assert move.turns == (move.close is not None and move.opened is not None)

    # The P&L realised: the closed part, at the fill's price against the average entry, by the side held.
    closed = Decimal(0)
    if position is not None and (signed_after == 0 or (signed_after > 0) != (signed_before > 0)):
        closed = position.quantity
    elif position is not None and abs(signed_after) < abs(signed_before):
        closed = quantity
    expected = Decimal(0)
    if position is not None and closed:
        expected = (price - position.avg_entry_price) * closed
        expected = expected if position.side is PositionSide.LONG else -expected
    assert move.realized == expected

    # The order's stop and target apply to what it opened or grew, never to a turned or reduced position.
    grown = position is not None and move.change is not None and abs(signed_after) > abs(signed_before)
    assert move.protected == (position is None or grown)
    if grown:
        assert position is not None and move.average is not None
        total = position.avg_entry_price * position.quantity + price * quantity
        assert move.average == total / abs(signed_after)
    else:
        assert move.average is None
