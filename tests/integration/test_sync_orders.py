"""Orders in flight during a sync: the book follows the orders' fills (partial ones included), never a guess
from the snapshot. Orders are placed through the real tools; the simulated exchange fills them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime, assemble
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.reconcile.plan import ChangeKind
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.sync import SyncResult

D = Decimal


class Desk:
    """Places orders through the tools, as an agent would."""

    def __init__(self, client: Client, rt: Runtime, clock: FixedClock) -> None:
        self.client, self.rt, self.clock = client, rt, clock

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def order(self, symbol: str, side: str, quantity: str, *, limit_away: str | None = None) -> dict[str, Any]:
        """Approve and execute; ``limit_away`` places a limit that share of the touch away from the market."""
        self.clock.advance(timedelta(seconds=61))  # past the duplicate-order window
        quote = await self.call("get_quote", symbol=symbol)
        bid, ask = D(quote["bid"]), D(quote["ask"])
        args: dict[str, Any] = {"symbol": symbol, "side": side, "quantity": quantity, "order_type": "market"}
        if side == "buy":
            args["stop_loss"] = str((bid * D("0.95")).quantize(D("0.01")))
        if limit_away is not None:
            away = D(limit_away)
            price = bid * (1 - away) if side == "buy" else ask * (1 + away)
            args.update(order_type="limit", limit_price=str(price.quantize(D("0.01"))))
        decision = await self.call("check_risk", **args)
        assert decision["approved"], decision["reasons"]
        return await self.call("execute_trade", approval_id=decision["approval_id"])

    async def sync(self, *, dry_run: bool = False) -> SyncResult:
        return await assemble(self.rt).sync.sync_positions(
            dry_run=dry_run, force=False, cycle_id=None, caller=Caller("t")
        )

    @property
    def sim(self) -> SimExchange:
        return cast(SimExchange, self.rt.broker)

    async def book(self) -> dict[str, Decimal]:
        async with self.rt.pool.acquire() as conn:
            rows = await conn.fetch("SELECT symbol, quantity FROM positions WHERE status = 'open'")
        return {r["symbol"]: r["quantity"] for r in rows}

    async def broker(self) -> dict[str, Decimal]:
        return {p.symbol: p.quantity for p in await self.sim.get_positions()}


@pytest.fixture
async def desk(server: Any, runtime: Runtime, clock: FixedClock) -> AsyncIterator[Desk]:
    async with Client(server) as client:
        yield Desk(client, runtime, clock)


async def test_a_position_whose_exit_order_is_working_is_left_for_its_fills(desk: Desk) -> None:
    await desk.order("AAPL", "buy", "10")
    exit_order = await desk.order("AAPL", "sell", "10", limit_away="0.03")
    assert exit_order["status"] == "accepted"

    result = await desk.sync()

    assert result.plan.changes == () and [s.symbol for s in result.plan.skipped] == ["AAPL"]
    assert any("in flight" in d for d in result.details)
    assert await desk.book() == {"AAPL": D(10)}


async def test_an_exit_that_filled_unseen_is_recorded_from_its_fill_with_its_pnl_not_closed_as_a_phantom(
    desk: Desk,
) -> None:
    entry = await desk.order("AAPL", "buy", "10")
    exit_order = await desk.order("AAPL", "sell", "10", limit_away="0.03")
    exit_price = D("200.50")
    await SimControls(desk.sim).fill(exit_order["client_order_id"], D(10), exit_price)

    result = await desk.sync()

    assert result.orders_refreshed == (exit_order["client_order_id"],)
    assert result.plan.of(ChangeKind.PHANTOM) == () and result.plan.skipped == ()
    async with desk.rt.pool.acquire() as conn:
        closed = await conn.fetchrow("SELECT * FROM positions WHERE symbol = 'AAPL'")
        status = await conn.fetchval("SELECT status FROM orders WHERE order_id = $1", exit_order["order_id"])
    assert closed is not None and closed["status"] == "closed" and closed["close_reason"] == "fill"
    assert closed["realized_pnl"] == (exit_price - D(entry["avg_fill_price"])) * 10
    assert status == "filled"


async def test_partial_fills_move_the_book_as_they_arrive_and_the_rest_when_it_fills(desk: Desk) -> None:
    entry = await desk.order("KO", "buy", "10", limit_away="0.03")
    assert entry["status"] == "accepted"
    await SimControls(desk.sim).fill(entry["client_order_id"], D(4), D("60"))

    first = await desk.sync()

    assert await desk.book() == {"KO": D(4)} == await desk.broker()
    assert [s.symbol for s in first.plan.skipped] == ["KO"] and first.plan.changes == ()
    await SimControls(desk.sim).fill(entry["client_order_id"], D(6), D("61"))

    second = await desk.sync()

    assert await desk.book() == {"KO": D(10)} == await desk.broker()
    assert second.plan.skipped == () and second.plan.changes == ()
    async with desk.rt.pool.acquire() as conn:
        avg = await conn.fetchval("SELECT avg_entry_price FROM positions WHERE symbol = 'KO' AND status = 'open'")
        fills = await conn.fetchval("SELECT count(*) FROM fills")
    assert avg == D("60.6") and fills == 2
    assert (await desk.sync()).plan.is_empty


async def test_an_entry_that_filled_unseen_is_added_from_its_fill_not_as_a_missing_position(desk: Desk) -> None:
    entry = await desk.order("MSFT", "buy", "3", limit_away="0.03")
    await SimControls(desk.sim).fill(entry["client_order_id"], D(3), D("405"))

    result = await desk.sync()

    assert result.plan.of(ChangeKind.MISSING) == ()
    async with desk.rt.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM positions WHERE symbol = 'MSFT' AND status = 'open'")
    assert row is not None and row["quantity"] == 3 and row["avg_entry_price"] == D("405")
    assert row["stop_loss"] is not None  # it came from the approved order, not from the snapshot


async def test_a_dry_run_does_not_record_fills_and_leaves_their_symbols_in_flight(desk: Desk) -> None:
    entry = await desk.order("MSFT", "buy", "3", limit_away="0.03")
    await SimControls(desk.sim).fill(entry["client_order_id"], D(3), D("405"))

    preview = await desk.sync(dry_run=True)

    assert preview.plan.changes == () and [s.symbol for s in preview.plan.skipped] == ["MSFT"]
    assert await desk.book() == {}
    async with desk.rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM fills") == 0


async def test_an_order_the_broker_does_not_report_is_still_in_flight_not_a_phantom(desk: Desk) -> None:
    await desk.order("AAPL", "buy", "5")
    working = await desk.order("AAPL", "sell", "5", limit_away="0.03")
    await SimControls(desk.sim).set_position("AAPL", D(0), D(0))
    await SimControls(desk.sim).fault("get_order", "empty", times=1)

    result = await desk.sync()

    assert [(s.symbol, s.orders) for s in result.plan.skipped] == [("AAPL", (working["client_order_id"],))]
    assert await desk.book() == {"AAPL": D(5)}


async def test_a_failed_order_lookup_aborts_the_sync_before_anything_changes(desk: Desk) -> None:
    working = await desk.order("KO", "buy", "10", limit_away="0.03")
    await SimControls(desk.sim).fill(working["client_order_id"], D(10), D("60"))
    await SimControls(desk.sim).set_position("MSFT", D(3), D("400"))
    await SimControls(desk.sim).fault("get_order", "error", times=1)

    failed = await desk.sync()

    assert failed.refused is not None and not failed.applied
    assert await desk.book() == {}
    async with desk.rt.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM fills") == 0
    recovered = await desk.sync()
    assert recovered.refused is None and await desk.book() == {"KO": D(10), "MSFT": D(3)}


async def test_an_exit_filled_in_two_parts_realises_the_pnl_of_both(desk: Desk) -> None:
    entry = await desk.order("JPM", "buy", "10")
    cost = D(entry["avg_fill_price"])
    exit_order = await desk.order("JPM", "sell", "10", limit_away="0.03")
    await SimControls(desk.sim).fill(exit_order["client_order_id"], D(4), cost + 2)
    await desk.sync()
    await SimControls(desk.sim).fill(exit_order["client_order_id"], D(6), cost - 1)

    await desk.sync()

    async with desk.rt.pool.acquire() as conn:
        closed = await conn.fetchrow("SELECT status, realized_pnl FROM positions WHERE symbol = 'JPM'")
    assert closed is not None and closed["status"] == "closed"
    assert closed["realized_pnl"] == 2 * 4 - 1 * 6
