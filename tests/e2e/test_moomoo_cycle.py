"""A full HK trading cycle over MCP with CATALYST_BROKER=moomoo: the real futu-api SDK against the local OpenD
emulator, from start_cycle to complete_cycle and out again; the agent command doing the same in its own
process; and the stdio server's stdout carrying protocol frames only while the SDK is loaded and in use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from catalyst_mcp.server.app import build_server
from tests.fakes.moomoo_harness import TRADE_PASSWORD, hk_clock, moomoo_runtime, opend
from tests.fakes.opend_account import SIMULATE

pytestmark = pytest.mark.anyio

FULL_BAR = "[✓ INIT][✓ PORTFOLIO][✓ SCAN][✓ ANALYZE][✓ DECIDE][✓ VALIDATE][✓ EXECUTE][✓ MONITOR][✓ LOG][✓ COMPLETE]"


async def test_a_full_hk_cycle_trades_whole_lots_on_moomoo_paper_through_the_sdk_and_exits(database_url: str) -> None:
    clock = hk_clock()
    with anyio.fail_after(60):
        async with (
            moomoo_runtime(database_url, clock) as (emulator, runtime),
            Client(build_server(runtime.settings, runtime=runtime)) as client,
        ):

            async def call(tool: str, **args: Any) -> dict[str, Any]:
                result = await client.call_tool(tool, args)
                assert not result.is_error, f"{tool}: {result.content}"
                assert isinstance(result.structured_content, dict)
                return result.structured_content

            started = await call("start_cycle", agent_id="hk_agent", market="HK")
            cycle_id = started["cycle_id"]
            assert cycle_id.startswith("hk_") and started["market_open"] is True
            assert started["broker_mode"] == "paper"
            portfolio = await call("get_portfolio", cycle_id=cycle_id)
            assert portfolio["account"]["cash"] == "1000000" and portfolio["account"]["currency"] == "HKD"
            scan = await call("scan_market", cycle_id=cycle_id, limit=3)
            assert scan["candidates"], scan
            symbol = "01810"  # Xiaomi: a board lot of 200, at HK$18 (spread 0.01 since 2025)
            quote = await call("get_quote", symbol="1810.HK", cycle_id=cycle_id)
            bid, ask, _ = emulator.quote(symbol)
            assert quote["symbol"] == symbol and (Decimal(quote["bid"]), Decimal(quote["ask"])) == (bid, ask)
            technicals = await call("get_technicals", symbol=symbol, cycle_id=cycle_id)
            assert technicals["rsi_14"] is not None and technicals["sma_20"] is not None  # from OpenD's K lines
            stop = (bid * Decimal("0.97")).quantize(Decimal("0.01"))
            target = (ask * Decimal("1.06")).quantize(Decimal("0.01"))
            odd = await call("check_risk", symbol=symbol, side="buy", quantity="300", order_type="market",
                                 stop_loss=str(stop), take_profit=str(target), cycle_id=cycle_id)  # fmt: skip
            assert odd["approved"] is False and any(c["rule"] == "lot_size" and not c["passed"] for c in odd["checks"])
            risk = await call("check_risk", symbol=symbol, side="buy", quantity="2000", order_type="market",
                                  stop_loss=str(stop), take_profit=str(target), cycle_id=cycle_id)  # fmt: skip
            assert risk["approved"] is True, risk["reasons"]
            trade = await call("execute_trade", approval_id=risk["approval_id"], cycle_id=cycle_id)
            assert (trade["status"], trade["filled_quantity"]) == ("filled", "2000")
            assert Decimal(trade["avg_fill_price"]) == ask
            await call("log_decision", cycle_id=cycle_id, decision="trade", reasoning="momentum", symbol=symbol)
            final = await call("complete_cycle", cycle_id=cycle_id)
            assert final["progress"] == FULL_BAR

            [order] = emulator.orders_of(SIMULATE)
            assert order.remark == trade["client_order_id"] and order.order_id == trade["broker_order_id"]
            assert emulator.positions_of(SIMULATE) == {symbol: Decimal(2000)}
            held = await call("get_portfolio")
            # No stop works at Futu (no brackets, no paper stops): the book keeps the levels for the monitor.
            assert [(p["symbol"], p["quantity"], p["stop_loss"]) for p in held["positions"]] == [(symbol, "2000", None)]
            levels = await runtime.pool.fetchrow(
                "SELECT stop_loss, take_profit FROM positions WHERE symbol = $1", symbol
            )
            assert levels is not None and (levels["stop_loss"], levels["take_profit"]) == (stop, target)

            exit_cycle = (await call("start_cycle", agent_id="hk_agent", mode="close"))["cycle_id"]
            sell = await call("check_risk", symbol=symbol, side="sell", quantity="2000", order_type="market",
                                  cycle_id=exit_cycle)  # fmt: skip
            assert sell["approved"] is True, sell["reasons"]
            out = await call("execute_trade", approval_id=sell["approval_id"], cycle_id=exit_cycle)
            assert out["status"] == "filled"
            assert emulator.positions_of(SIMULATE) == {} and (await call("get_portfolio"))["positions"] == []
            synced = await call("sync_positions", dry_run=True)
            assert synced["changes_made"] is False and synced["refused"] is None


def _env(port: int, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    return env | {
        "CATALYST_DATABASE_URL": database_url,
        "CATALYST_BROKER": "moomoo",
        "CATALYST_MARKET": "HK",
        "CATALYST_MOOMOO__PORT": str(port),
        "CATALYST_MOOMOO__TIMEOUT_SECONDS": "5",
        "CATALYST_LOG_LEVEL": "DEBUG",
    }


def test_the_agent_command_completes_a_ten_phase_hk_cycle_on_the_emulator(database_url: str) -> None:
    with opend(hk_clock()) as emulator:
        emulator.pin("01810", "18.60")  # Xiaomi up 3.3 % on the day: the rules' best candidate, 2 lots of 200 fit
        done = subprocess.run(
            [sys.executable, "-m", "catalyst_mcp", "agent", "--mode", "trade", "--force"],
            env=_env(emulator.port, database_url),
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
        orders = emulator.orders_of(SIMULATE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert FULL_BAR in done.stdout, done.stdout
    assert "execute_trade" in done.stdout and "filled" in done.stdout
    assert [(o.code, o.qty % 200 == 0, o.filled == o.qty) for o in orders] == [("01810", True, True)]
    assert orders[0].remark and orders[0].remark.startswith("cat-")
    assert "Traceback" not in done.stderr and TRADE_PASSWORD not in done.stdout + done.stderr


def test_the_stdio_servers_stdout_carries_only_protocol_frames_while_futu_is_in_use(
    database_url: str, tmp_path: Path
) -> None:
    """futu-api logs to stdout at INFO from the first connection on: every line the server writes must still be
    a JSON-RPC message."""
    requests: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_portfolio", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_quote",
                                                                        "arguments": {"symbol": "700"}}},
    ]  # fmt: skip
    with opend(hk_clock()) as emulator, (tmp_path / "stderr").open("w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "catalyst_mcp", "serve"],
            env=_env(emulator.port, database_url) | {"CATALYST_ROLE": "trader"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert process.stdin is not None and process.stdout is not None
        answers: list[dict[str, Any]] = []
        lines: list[str] = []
        try:
            for request in requests:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                if "id" in request:
                    while True:
                        line = process.stdout.readline()
                        assert line, "the server closed stdout"
                        lines.append(line)
                        message = json.loads(line)  # a line that is not JSON fails here
                        assert message.get("jsonrpc") == "2.0"
                        if message.get("id") == request["id"]:
                            answers.append(message)
                            break
            process.stdin.close()  # the server ends at the end of its input
            rest = process.stdout.read()
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            process.stdout.close()
        stderr.seek(0)
        errors = stderr.read()
        connected = emulator.counts[1001]
    for line in [*lines, *rest.splitlines()]:
        assert json.loads(line).get("jsonrpc") == "2.0", line
    portfolio = answers[1]["result"]["structuredContent"]
    assert portfolio["account"]["currency"] == "HKD"
    assert answers[2]["result"]["structuredContent"]["symbol"] == "00700"
    assert connected >= 2  # the SDK's trade and quote contexts talked to OpenD
    assert "New connect ready" not in rest + errors  # the SDK's connection lines are in its log file only
