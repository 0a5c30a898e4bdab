"""close_position: an exit through check_risk and execute_trade — every rule and the trading state apply, it
never reduces more than the position, and the legs of what remains keep protecting it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.markets.clocks import FixedClock
from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

D = Decimal


async def test_a_partial_close_sells_that_much_and_keeps_the_rest_protected(
    tools: Tools, book: Book, clock: FixedClock
) -> None:
    cycle_id = await tools.start_cycle()
    await tools.buy(cycle_id, "AAPL", "10")
    closed = await tools.ok(
        "close_position", {"symbol": "AAPL", "quantity": "4", "reason": "taking some profit", "cycle_id": cycle_id}
    )
    assert closed["status"] == "filled" and closed["side"] == "sell" and D(closed["filled_quantity"]) == 4
    assert closed["approval"]["approved"] is True and closed["approval"]["intent"]["side"] == "sell"
    assert await book.open_positions() == await book.broker_positions() == {"AAPL": D(6)}
    portfolio = await tools.ok("get_portfolio")
    assert portfolio["positions"][0]["stop_loss"] is not None, "the 6 shares left keep a working stop"

    status = (await tools.ok("workflow_status", {"cycle_id": cycle_id}))["cycles"][0]
    details = {p["name"]: p.get("detail") for p in status["phases"]}
    assert details["DECIDE"] == "close 4 AAPL: taking some profit"

    again = await tools.ok("close_position", {"symbol": "AAPL", "reason": "done", "cycle_id": cycle_id})
    assert again["reason"] == "refused by check_risk: a sell order for AAPL was sent less than 60 s ago"
    clock.advance(timedelta(seconds=61))  # past the duplicate-order window
    whole = await tools.ok("close_position", {"symbol": "AAPL", "reason": "done", "cycle_id": cycle_id})
    assert whole["status"] == "filled" and D(whole["filled_quantity"]) == 6 and whole["position"] is None
    assert await book.open_positions() == await book.broker_positions() == {}


async def test_close_position_refuses_what_it_cannot_do_in_one_line(tools: Tools, book: Book) -> None:
    assert await tools.error("close_position", {"symbol": "MSFT", "reason": "x"}) == (
        "Error executing tool close_position: no open position in MSFT"
    )
    await tools.buy(None, "MSFT", "3")
    text = await tools.error("close_position", {"symbol": "MSFT", "quantity": "5", "reason": "x"})
    assert text.endswith("the position in MSFT is 3: cannot close 5")
    scan = await tools.start_cycle(mode="scan")
    text = await tools.error("close_position", {"symbol": "MSFT", "reason": "x", "cycle_id": scan})
    assert "scan cycle" in text
    assert await book.open_positions() == {"MSFT": D(3)}


async def test_a_close_refused_by_the_rules_sends_nothing_and_says_why_and_reducing_allows_it(
    tools: Tools, book: Book, runtime: Runtime
) -> None:
    await tools.buy(None, "AAPL", "5")
    async with runtime.pool.acquire() as conn:
        await conn.execute("UPDATE trading_state SET state = 'halted' WHERE market = 'US'")
    refused = await tools.ok("close_position", {"symbol": "AAPL", "reason": "risk off"})
    assert refused["status"] == "rejected" and refused["order_id"] is None
    assert refused["reason"] == "refused by check_risk: trading is halted: no new orders"
    assert refused["approval"]["approved"] is False and refused["approval"]["approval_id"] is None
    assert await book.open_positions() == await book.broker_positions() == {"AAPL": D(5)}

    async with runtime.pool.acquire() as conn:  # a close is an exit: allowed while only reducing
        await conn.execute("UPDATE trading_state SET state = 'reducing' WHERE market = 'US'")
    closed = await tools.ok("close_position", {"symbol": "AAPL", "reason": "risk off"})
    assert closed["status"] == "filled" and await book.open_positions() == {}
