"""Every fault OpenD can throw at an order, driven through execute_trade over MCP with the real futu-api SDK
against the emulator: afterwards there is exactly one order at the broker (none when nothing reached it), and
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
from catalyst_mcp.server.app import build_server
from tests.fakes.moomoo_harness import hk_clock, moomoo_runtime
from tests.fakes.opend_account import SIMULATE
from tests.fakes.opend_emulator import OpenDEmulator

pytestmark = pytest.mark.anyio

PLACE = 2202
SYMBOL = "01810"  # a board lot of 200


@dataclass
class Stack:
    emulator: OpenDEmulator
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
        assert "\n" not in text and "Traceback" not in text
        return text

    async def approve(self, quantity: str = "400") -> str:
        bid = self.emulator.quote(SYMBOL)[0]
        decision = await self.call(
            "check_risk",
            symbol=SYMBOL,
            side="buy",
            quantity=quantity,
            order_type="market",
            stop_loss=str((bid * Decimal("0.97")).quantize(Decimal("0.01"))),
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
        return self.emulator.positions_of(SIMULATE)

    def orders(self) -> int:
        return len(self.emulator.orders_of(SIMULATE))


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    async with (
        moomoo_runtime(database_url, hk_clock(), moomoo={"timeout_seconds": 1.0}) as (emulator, runtime),
        Client(build_server(runtime.settings, runtime=runtime)) as client,
    ):
        stack = Stack(emulator, runtime, client)
        stack.cycle_id = str((await stack.call("start_cycle", market="HK"))["cycle_id"])
        yield stack


async def test_a_connection_dropped_after_opend_stored_the_order_is_resolved_by_remark_and_booked_once(
    stack: Stack,
) -> None:
    approval = await stack.approve()
    dropped = stack.emulator.fault(PLACE, "drop-after")

    result = await stack.execute(approval)

    assert dropped.handled.is_set()
    assert result["status"] == "filled" and result["filled_quantity"] == "400" and result["replayed"] is False
    assert stack.orders() == 1 and stack.emulator.counts[PLACE] == 1
    assert await stack.book() == stack.at_broker() == {SYMBOL: Decimal(400)}
    assert await stack.fills(approval) == 1
    again = await stack.execute(approval)
    assert again["replayed"] is True and stack.orders() == 1 and await stack.fills(approval) == 1


async def test_a_connection_dropped_before_the_order_was_stored_sends_it_once_on_the_retry(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.fault(PLACE, "drop-before")

    text = await stack.error("execute_trade", approval_id=approval, cycle_id=stack.cycle_id)
    assert "not confirmed" in text and stack.orders() == 0 and await stack.book() == {}

    result = await stack.execute(approval)

    assert result["status"] == "filled" and result["replayed"] is True
    assert stack.orders() == 1 and await stack.book() == stack.at_broker() == {SYMBOL: Decimal(400)}
    assert await stack.fills(approval) == 1


async def test_a_request_opend_never_answers_is_looked_up_and_sent_once_on_the_retry(stack: Stack) -> None:
    approval = await stack.approve()
    silent = stack.emulator.fault(PLACE, "no-reply")

    with anyio.fail_after(15):
        text = await stack.error("execute_trade", approval_id=approval, cycle_id=stack.cycle_id)

    assert silent.handled.is_set() and "not confirmed" in text
    assert stack.orders() == 0 and await stack.book() == {}
    result = await stack.execute(approval)
    assert result["status"] == "filled" and stack.orders() == 1
    assert await stack.book() == stack.at_broker() == {SYMBOL: Decimal(400)}


async def test_opend_refusing_for_now_sends_nothing_and_the_retry_sends_one(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.fault(PLACE, "refuse")

    text = await stack.error("execute_trade", approval_id=approval, cycle_id=stack.cycle_id)
    assert "busy" in text and stack.orders() == 0

    result = await stack.execute(approval)
    assert result["status"] == "filled" and stack.orders() == 1
    assert await stack.book() == stack.at_broker() == {SYMBOL: Decimal(400)}


async def test_an_order_opend_rejects_ends_rejected_with_its_reason_and_moves_nothing(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.fault(PLACE, "refuse", message="insufficient buying power")

    result = await stack.execute(approval)

    assert result["status"] == "rejected" and result["filled_quantity"] == "0"
    assert stack.orders() == 0 and await stack.book() == stack.at_broker() == {}
    again = await stack.execute(approval)
    assert again["status"] == "rejected" and again["replayed"] is True and stack.orders() == 0


async def test_a_partial_fill_is_booked_as_it_comes_and_the_rest_once_it_fills(stack: Stack) -> None:
    approval = await stack.approve("600")
    stack.emulator.partial_next(SYMBOL, 200)

    first = await stack.execute(approval)
    assert (first["status"], first["filled_quantity"]) == ("partially_filled", "200")
    assert await stack.book() == stack.at_broker() == {SYMBOL: Decimal(200)}

    [order] = stack.emulator.orders_of(SIMULATE)
    stack.emulator.fill(order.order_id)
    later = await stack.execute(approval)

    assert (later["status"], later["filled_quantity"], later["replayed"]) == ("filled", "600", True)
    assert stack.orders() == 1 and await stack.book() == stack.at_broker() == {SYMBOL: Decimal(600)}


async def test_opend_not_listening_fails_at_once_with_one_line_and_sends_nothing(stack: Stack) -> None:
    approval = await stack.approve()
    stack.emulator.stop_listening()

    with anyio.fail_after(15):
        text = await stack.error("execute_trade", approval_id=approval, cycle_id=stack.cycle_id)

    assert "not listening" in text or "not confirmed" in text
    assert stack.orders() == 0 and await stack.book() == {}
