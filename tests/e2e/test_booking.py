"""Booking the broker's answer: an entry's answer is booked in one statement against the position read on the
same hold of the lane, and the long way (a transaction that reads the position first) whenever that position
is no longer the one it was computed from; a fill that turns a position to the other side closes one row and
opens the other."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.domain.enums import PositionSide, Side
from catalyst_mcp.domain.models import Fill
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.booking import Booking
from catalyst_mcp.store import book as book_store
from catalyst_mcp.store.db import transaction
from tests.e2e.conftest import record_unsent

if TYPE_CHECKING:
    from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio
D = Decimal


async def test_an_answer_computed_from_a_position_that_moved_is_booked_the_long_way(
    tools: Tools, book: Book, runtime: Runtime, clock: FixedClock
) -> None:
    first = await tools.buy(None, "AAPL", "5")
    clock.advance(timedelta(seconds=61))  # past the duplicate window
    decision = await tools.approve(None, "AAPL", "3")
    market = runtime.profile.market
    approval, order = await record_unsent(runtime, decision["approval_id"])
    async with runtime.pool.acquire() as conn:
        answer = await runtime.broker.submit_order(approval.intent, order.client_order_id)
        held = await book_store.position_of(conn, market, "AAPL")
        assert held is not None and held.quantity == 5
        stale = replace(held, quantity=D(4))  # as if read before a fill that has since been booked

        booking = Booking(market, "sim", runtime.clock)
        booked = await booking.record_answer(conn, order, answer, Caller("test"), tool="execute_trade", held=stale)

    assert booked.status.value == "filled" and booked.filled_quantity == 3
    (position,) = await book.rows("SELECT quantity, avg_entry_price FROM positions WHERE status = 'open'")
    expected = (D(first["avg_fill_price"]) * 5 + answer.avg_fill_price * 3) / 8 if answer.avg_fill_price else None
    assert position["quantity"] == 8 and position["avg_entry_price"] == expected
    assert await book.value("SELECT count(*) FROM fills WHERE order_id = $1", order.order_id) == 1


async def test_a_fill_larger_than_the_position_closes_it_and_opens_the_other_side(
    tools: Tools, book: Book, runtime: Runtime
) -> None:
    bought = await tools.buy(None, "AAPL", "5")
    market = runtime.profile.market
    price = D(bought["avg_fill_price"]) + 2
    sell = Fill("turn-1", "b-turn", "AAPL", Side.SELL, D(8), price, runtime.clock.now())
    async with runtime.pool.acquire() as conn, transaction(conn):
        after = await book_store.apply_fill(conn, market, sell, D(1), D(1000))

    assert after is not None and (after.side, after.quantity, after.avg_entry_price) == (
        PositionSide.SHORT,
        D(3),
        price,
    )
    assert (after.stop_loss, after.take_profit) == (None, None)  # an exit's fill does not protect what it opened
    (closed,) = await book.rows("SELECT status, realized_pnl FROM positions WHERE status = 'closed'")
    assert closed["realized_pnl"] == 2 * 5
