"""A full trading cycle over MCP with CATALYST_BROKER=alpaca: the real alpaca-py SDK against the local
emulator of Alpaca's REST API, from start_cycle to complete_cycle, then an exit through the bracket's legs."""

from __future__ import annotations

import logging
import os
import sys
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client

from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from tests.fakes.alpaca_emulator import AlpacaEmulator, serve
from tests.fakes.alpaca_harness import KEY_ID, SECRET, alpaca_runtime

pytestmark = pytest.mark.anyio

FULL_BAR = "[✓ INIT][✓ PORTFOLIO][✓ SCAN][✓ ANALYZE][✓ DECIDE][✓ VALIDATE][✓ EXECUTE][✓ MONITOR][✓ LOG][✓ COMPLETE]"
CENT = Decimal("0.01")


async def test_a_full_cycle_trades_on_alpaca_through_the_sdk_and_exits_through_the_bracket_legs(
    database_url: str, clock: FixedClock, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with anyio.fail_after(60):
        async with (
            alpaca_runtime(database_url, clock) as (emulator, runtime),
            Client(build_server(runtime.settings, runtime=runtime)) as client,
        ):

            async def call(tool: str, **args: Any) -> dict[str, Any]:
                result = await client.call_tool(tool, args)
                seen.append(str(result.content) + str(result.structured_content))
                assert not result.is_error, f"{tool}: {result.content}"
                assert isinstance(result.structured_content, dict)
                return result.structured_content

            started = await call("start_cycle", agent_id="alpaca_agent")
            cycle_id = started["cycle_id"]
            assert started["market_open"] is True and started["broker_mode"] == "paper"
            portfolio = await call("get_portfolio", cycle_id=cycle_id)
            assert portfolio["account"]["cash"] == "100000" and portfolio["positions"] == []
            scan = await call("scan_market", cycle_id=cycle_id, limit=3)
            symbol = scan["candidates"][0]["symbol"]
            assert Decimal(scan["candidates"][0]["price"]) == emulator.quote(symbol).last
            quote = await call("get_quote", symbol=symbol, cycle_id=cycle_id)
            assert (Decimal(quote["bid"]), Decimal(quote["ask"])) == (
                emulator.quote(symbol).bid,
                emulator.quote(symbol).ask,
            )
            stop = (Decimal(quote["bid"]) * Decimal("0.95")).quantize(CENT)
            target = (Decimal(quote["ask"]) * Decimal("1.08")).quantize(CENT)
            risk = await call(
                "check_risk",
                symbol=symbol,
                side="buy",
                quantity="5",
                order_type="market",
                stop_loss=str(stop),
                take_profit=str(target),
                cycle_id=cycle_id,
            )
            assert risk["approved"] is True, risk["reasons"]
            trade = await call("execute_trade", approval_id=risk["approval_id"], cycle_id=cycle_id)
            assert (trade["status"], trade["filled_quantity"]) == ("filled", "5")
            await call("log_decision", cycle_id=cycle_id, decision="trade", reasoning="momentum", symbol=symbol)
            final = await call("complete_cycle", cycle_id=cycle_id)
            assert final["progress"] == FULL_BAR

            [entry] = emulator.top_orders()
            assert entry.order_class == "bracket" and entry.client_order_id == trade["client_order_id"]
            legs = sorted(
                (emulator.orders[i].type, emulator.orders[i].stop_price or emulator.orders[i].limit_price)
                for i in entry.legs
            )
            assert legs == [("limit", target), ("stop", stop)]
            held = await call("get_portfolio")
            assert [(p["symbol"], p["quantity"]) for p in held["positions"]] == [(symbol, "5")]

            # The exit: the bracket's working legs hold all 5 shares, so they are cancelled (and awaited) first.
            exit_cycle = (await call("start_cycle", agent_id="alpaca_agent", mode="close"))["cycle_id"]
            sell = await call(
                "check_risk", symbol=symbol, side="sell", quantity="5", order_type="market", cycle_id=exit_cycle
            )
            assert sell["approved"] is True, sell["reasons"]
            out = await call("execute_trade", approval_id=sell["approval_id"], cycle_id=exit_cycle)
            assert out["status"] == "filled"
            assert [emulator.orders[i].status for i in entry.legs] == ["canceled", "canceled"]
            assert emulator.positions == {} and (await call("get_portfolio"))["positions"] == []

    out_text, err_text = capfd.readouterr()
    for text in [*seen, caplog.text, out_text, err_text]:
        assert SECRET not in text and KEY_ID not in text


async def test_the_cli_agent_and_its_server_switch_to_alpaca_with_catalyst_broker(
    database_url: str, clock: FixedClock
) -> None:
    emulator = AlpacaEmulator(clock, key_id=KEY_ID, secret_key=SECRET)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYST_", "APCA_"))}
    with anyio.fail_after(60):
        async with serve(emulator) as url:
            env |= {
                "CATALYST_DATABASE_URL": database_url,
                "CATALYST_BROKER": "alpaca",
                "CATALYST_ALPACA_URL": url,
                "CATALYST_ALPACA_DATA_URL": url,
                "APCA_API_KEY_ID": KEY_ID,
                "APCA_API_SECRET_KEY": SECRET,
                "CATALYST_LOG_LEVEL": "DEBUG",
            }
            done = await anyio.run_process(
                [sys.executable, "-m", "catalyst_mcp", "agent", "--mode", "scan"], env=env, check=False
            )

    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output
    paths = {path for _, path, _, _ in emulator.requests}
    assert {"/v2/account", "/v2/clock", "/v2/positions", "/v2/stocks/snapshots"} <= paths
    assert SECRET not in output and KEY_ID not in output
