"""Exits keep their protection on Alpaca too (issue 9: "a partial exit cancels the protective legs of the remaining
shares"): through the MCP tools, the real alpaca-py SDK and the emulator, a partial exit leaves the rest of the
position under a stop and a take profit working at the broker, and get_portfolio reports what works there."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client

from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from tests.fakes.alpaca_harness import alpaca_runtime

pytestmark = pytest.mark.anyio

CENT = Decimal("0.01")
OPEN_PACE = {"duplicate_window_seconds": 0, "max_orders_per_minute": 1000, "max_trades_per_day": 1000}


async def test_a_partial_exit_on_alpaca_leaves_the_rest_under_a_working_stop_and_take_profit(
    database_url: str, clock: FixedClock
) -> None:
    with anyio.fail_after(60):
        async with (
            alpaca_runtime(database_url, clock, risk=OPEN_PACE) as (emulator, runtime),
            Client(build_server(runtime.settings, runtime=runtime)) as client,
        ):

            async def call(tool: str, **args: Any) -> dict[str, Any]:
                result = await client.call_tool(tool, args)
                assert not result.is_error, f"{tool}: {result.content}"
                assert isinstance(result.structured_content, dict)
                return result.structured_content

            quote = await call("get_quote", symbol="AAPL")
            stop = (Decimal(quote["bid"]) * Decimal("0.95")).quantize(CENT)
            target = (Decimal(quote["ask"]) * Decimal("1.08")).quantize(CENT)
            entry = await call(
                "check_risk", symbol="AAPL", side="buy", quantity="10", order_type="market",
                stop_loss=str(stop), take_profit=str(target),
            )  # fmt: skip
            assert entry["approved"], entry["reasons"]
            bought = await call("execute_trade", approval_id=entry["approval_id"])
            assert bought["status"] == "filled"

            exit_ = await call("check_risk", symbol="AAPL", side="sell", quantity="3", order_type="market")
            assert exit_["approved"], exit_["reasons"]
            sold = await call("execute_trade", approval_id=exit_["approval_id"])

            assert sold["status"] == "filled" and sold["position"]["quantity"] == "7"
            working = [o for o in emulator.working("AAPL") if o.side == "sell"]
            assert sorted((o.type, o.qty, o.stop_price or o.limit_price) for o in working) == [
                ("limit", Decimal(7), target),
                ("stop", Decimal(7), stop),
            ]
            held = (await call("get_portfolio"))["positions"][0]
            assert (held["quantity"], Decimal(held["stop_loss"]), Decimal(held["take_profit"])) == ("7", stop, target)

            # The stop triggers at the broker: the sync books its fill, and the take profit is cancelled with it.
            emulator.set_price("AAPL", stop - 1)
            emulator.match()
            synced = await call("sync_positions")
            assert synced["changes_made"] is False and synced["refused"] is None
            assert (await call("get_portfolio"))["positions"] == []
            assert [o for o in emulator.working("AAPL")] == []
