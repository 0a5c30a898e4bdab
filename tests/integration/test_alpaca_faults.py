"""Every fault Alpaca can throw at an order, driven through execute_trade over MCP with the real SDK against
the emulator: afterwards there is exactly one order at the broker (none when it refused the request), and
the book in PostgreSQL equals the broker's positions, moved only by the fills the broker confirmed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from tests.fakes.alpaca_emulator import AlpacaEmulator
from tests.fakes.alpaca_harness import SECRET, alpaca_runtime

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5  # the adapter's request timeout in these tests


@dataclass
class Stack:
    emulator: AlpacaEmulator
    runtime: Runtime
    client: Client
    cycle_id: str = ""

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        assert not result.is_error, f"{tool}: {result.content}"
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def error(self, tool: str, **args: Any) -> str:
        result = await self.client.call_tool(tool, args)
        assert result.is_error, f"{tool} succeeded: {result.structured_content}"
        text = str(result.content[0].text)  # type: ignore[union-attr]
        assert "\n" not in text and "Traceback" not in text and SECRET not in text
        return text

    async def approve(self, symbol: str = "AAPL", quantity: str = "10") -> str:
        bid = self.emulator.quote(symbol).bid
        decision = await self.call(
            "check_risk",
            symbol=symbol,
            side="buy",
            quantity=quantity,
            order_type="market",
            stop_loss=str((bid * Decimal("0.95")).quantize(Decimal("0.01"))),
            cycle_id=self.cycle_id,
        )
        assert decision["approved"] is True, decision["reasons"]
        return str(decision["approval_id"])

    async def execute(self, approval_id: str) -> dict[str, Any]:
        return await self.call("execute_trade", approval_id=approval_id, cycle_id=self.cycle_id)

    async def book(self) -> dict[str, Decimal]:
        async with self.runtime.pool.acquire() as conn:
            rows = await conn.fetch("SELECT symbol, quantity FROM positions WHERE status = 'open'")
        return {r["symbol"]: r["quantity"] for r in rows}

    async def fills(self, approval_id: str) -> int:
        async with self.runtime.pool.acquire() as conn:
            count = await conn.fetchval(
                "SELECT count(*) FROM fills f JOIN orders o USING (order_id) WHERE o.client_order_id = $1",
                f"cat-{uuid.UUID(approval_id).hex}",
            )
        return int(count)

    def at_broker(self) -> dict[str, Decimal]:
        return {symbol: qty for symbol, (qty, _) in self.emulator.positions.items()}

    def posts(self) -> int:
        return len(self.emulator.order_requests())


@pytest.fixture
async def stack(database_url: str, clock: FixedClock) -> AsyncIterator[Stack]:
    async with (
        alpaca_runtime(database_url, clock, alpaca_timeout_seconds=TIMEOUT) as (emulator, runtime),
        Client(build_server(runtime.settings, runtime=runtime)) as client,
    ):
        stack = Stack(emulator, runtime, client)
        stack.cycle_id = str((await stack.call("start_cycle"))["cycle_id"])
        yield stack


async def test_a_submit_that_times_out_after_alpaca_accepted_it_is_found_and_booked_once(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.inject("POST", "/v2/orders", "hang_after")

    result = await stack.execute(approval)

    assert result["status"] == "filled" and result["filled_quantity"] == "10" and result["replayed"] is False
    assert len(stack.emulator.top_orders()) == 1 and stack.posts() == 1
    assert await stack.book() == stack.at_broker() == {"AAPL": Decimal(10)}
    assert await stack.fills(approval) == 1


async def test_a_submit_that_times_out_before_the_order_landed_is_resolved_on_the_retry(stack: Stack) -> None:
    approval = await stack.approve()
    late = stack.emulator.inject("POST", "/v2/orders", "hang_before")

    text = await stack.error("execute_trade", approval_id=approval, cycle_id=stack.cycle_id)
    assert "not confirmed" in text and stack.emulator.top_orders() == [] and await stack.book() == {}

    late.released.set()
    with anyio.fail_after(5):
        await late.handled.wait()  # the held request now lands at the broker, long after the client gave up
    result = await stack.execute(approval)

    assert result["status"] == "filled" and result["replayed"] is True
    assert len(stack.emulator.top_orders()) == 1 and stack.posts() == 1  # the retry looked it up, sent nothing
    assert await stack.book() == stack.at_broker() == {"AAPL": Decimal(10)}
    assert await stack.fills(approval) == 1


@pytest.mark.parametrize("status", [429, 500])
async def test_a_rate_limit_or_server_error_on_submit_sends_nothing_and_the_retry_sends_one(
    stack: Stack, status: int
) -> None:
    approval = await stack.approve()
    stack.emulator.inject("POST", "/v2/orders", status=status, message="try again later")
    started = anyio.current_time()

    await stack.error("execute_trade", approval_id=approval, cycle_id=stack.cycle_id)

    assert anyio.current_time() - started < 1.5  # no hidden 3-second sleeps
    assert stack.posts() == 1 and stack.emulator.top_orders() == [] and await stack.book() == {}
    result = await stack.execute(approval)
    assert result["status"] == "filled" and stack.posts() == 2 and len(stack.emulator.top_orders()) == 1
    assert await stack.book() == stack.at_broker() == {"AAPL": Decimal(10)}


async def test_a_connection_dropped_after_alpaca_stored_the_order_is_resolved_by_lookup(stack: Stack) -> None:
    approval = await stack.approve("MSFT", "3")
    stack.emulator.inject("POST", "/v2/orders", "drop_after")

    result = await stack.execute(approval)

    assert result["status"] == "filled" and result["broker_order_id"] == stack.emulator.top_orders()[0].id
    assert len(stack.emulator.top_orders()) == 1 and stack.posts() == 1
    assert await stack.book() == stack.at_broker() == {"MSFT": Decimal(3)}


async def test_partial_fills_move_the_book_by_each_fill_and_the_rest_arrives_on_replay(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.partial_share = Decimal("0.4")

    first = await stack.execute(approval)

    assert (first["status"], first["filled_quantity"]) == ("partially_filled", "4")
    assert await stack.book() == stack.at_broker() == {"AAPL": Decimal(4)}
    [order] = stack.emulator.top_orders()
    stack.emulator.fill(order.id)
    second = await stack.execute(approval)

    assert (second["status"], second["filled_quantity"], second["replayed"]) == ("filled", "10", True)
    assert len(stack.emulator.top_orders()) == 1 and stack.posts() == 1
    assert await stack.book() == stack.at_broker() == {"AAPL": Decimal(10)}
    assert await stack.fills(approval) == 2


async def test_an_order_alpaca_accepts_and_then_rejects_is_reported_rejected_and_books_nothing(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.reject_reason = "order rejected by the exchange"

    result = await stack.execute(approval)

    assert result["status"] == "rejected" and result["filled_quantity"] == "0"
    assert [o.status for o in stack.emulator.top_orders()] == ["rejected"]
    assert await stack.book() == stack.at_broker() == {}


async def test_a_submit_alpaca_refuses_outright_creates_no_order_and_no_position(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.inject("POST", "/v2/orders", status=422, message="asset AAPL is not tradable right now")

    result = await stack.execute(approval)

    assert result["status"] == "rejected"
    assert result["reason"] == "Alpaca rejected the request (422): asset AAPL is not tradable right now"
    assert stack.emulator.top_orders() == [] and stack.posts() == 1
    assert await stack.book() == stack.at_broker() == {}


async def test_an_entry_whose_exit_legs_were_dropped_is_booked_as_the_broker_holds_it(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    approval = await stack.approve()
    stack.emulator.drop_legs = True

    result = await stack.execute(approval)

    # The market entry filled before it could be cancelled: the book follows the broker, and the unprotected
    # entry is logged as an error for the operator.
    assert result["status"] == "filled" and len(stack.emulator.top_orders()) == 1
    assert await stack.book() == stack.at_broker() == {"AAPL": Decimal(10)}
    assert any("without its exit legs" in r.getMessage() for r in caplog.records)


async def test_an_order_through_the_server_reads_neither_the_clock_again_nor_fills_of_a_complete_fill(
    stack: Stack,
) -> None:
    stack.emulator.reset_counts()  # start_cycle has read the clock once

    for symbol in ("AAPL", "MSFT", "NVDA"):
        result = await stack.execute(await stack.approve(symbol, "2"))
        assert result["status"] == "filled"

    assert stack.emulator.count("/v2/clock") == 0 and stack.emulator.count("/v2/account/activities/{kind}") == 0
    assert stack.emulator.count("/v2/orders", "POST") == 3
