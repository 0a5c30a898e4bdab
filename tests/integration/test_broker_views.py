"""What the broker last said, kept in the book (ADR 0012): checks in a stream ask the broker for nothing but the
submit; a fill carries the account to the book's next version, in any process; anything else that moves what
the broker holds for us, the simulated exchange's controls and age make the next check ask again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from tests.fakes.alpaca_emulator import AlpacaEmulator, serve
from tests.fakes.alpaca_harness import KEY_ID, SECRET, alpaca_settings

pytestmark = pytest.mark.anyio

ACCOUNT, QUOTES, ORDERS = "GET /v2/account", "GET /v2/stocks/snapshots", "POST /v2/orders"
CENT = Decimal("0.01")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The simulated exchange's server of ``server``: the same buy checked again is not a duplicate here."""
    return Settings(
        database_url=SecretStr(database_url), agent_id="test_agent", sim_seed=7, risk={"duplicate_window_seconds": 0}
    )


@dataclass
class Desk:
    """One server (an MCP client on its own runtime) on the shared emulator and database."""

    client: Client
    emulator: AlpacaEmulator

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        assert not result.is_error, f"{tool}: {result.content}"
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def check(self, symbol: str = "AAPL", quantity: str = "1") -> dict[str, Any]:
        stop = (self.emulator.quote(symbol).bid * Decimal("0.95")).quantize(CENT)
        args = {"symbol": symbol, "side": "buy", "quantity": quantity, "order_type": "market", "stop_loss": str(stop)}
        decision = await self.call("check_risk", **args)
        assert decision["approved"], decision["reasons"]
        return decision

    async def buy(self, symbol: str = "AAPL", quantity: str = "1") -> dict[str, Any]:
        decision = await self.check(symbol, quantity)
        done = await self.call("execute_trade", approval_id=decision["approval_id"])
        assert done["status"] == "filled", done
        return done

    async def broker_account(self) -> tuple[Decimal, Decimal]:
        """(cash, buying power) as the broker says them now (get_portfolio reads the account afresh)."""
        account = (await self.call("get_portfolio"))["account"]
        return Decimal(account["cash"]), Decimal(account["buying_power"])

    def requests(self) -> dict[str, int]:
        """The requests since the last look, by method and route (the clock's, once a day, left out)."""
        counts = {f"{m} {r}": n for (m, r), n in self.emulator.counts.items() if r != "/v2/clock" and n}
        self.emulator.reset_counts()
        return counts


@asynccontextmanager
async def desks(database_url: str, clock: FixedClock, n: int = 1, **extra: Any) -> AsyncIterator[list[Desk]]:
    emulator = AlpacaEmulator(clock, key_id=KEY_ID, secret_key=SECRET)
    risk = {"duplicate_window_seconds": 0}
    async with serve(emulator) as url:
        opened: list[Desk] = []
        async with _servers(alpaca_settings(url, database_url, risk=risk, **extra), clock, n, emulator, opened):
            emulator.reset_counts()
            yield opened


@asynccontextmanager
async def _servers(settings: Any, clock: FixedClock, n: int, emulator: AlpacaEmulator, out: list[Desk]) -> Any:
    if n == 0:
        yield
        return
    async with open_runtime(settings, clock=clock) as rt, Client(build_server(settings, runtime=rt)) as client:
        out.append(Desk(client, emulator))
        async with _servers(settings, clock, n - 1, emulator, out):
            yield


async def view(database_url: str) -> tuple[Decimal, Decimal, bool]:
    """The kept account's (cash, buying power) and whether it is true of the book's current version."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT v.cash, v.buying_power, v.version = b.version AS current
               FROM account_views v JOIN book_versions b USING (market) WHERE v.market = 'US'"""
        )
    finally:
        await conn.close()
    assert row is not None
    return row["cash"], row["buying_power"], row["current"]


async def test_checks_in_a_stream_ask_the_broker_for_nothing_but_the_submit(
    database_url: str, clock: FixedClock
) -> None:
    async with desks(database_url, clock) as [desk]:
        await desk.buy()
        assert desk.requests() == {ACCOUNT: 1, QUOTES: 1, ORDERS: 1}  # the first check reads both
        for _ in range(4):
            clock.advance(timedelta(milliseconds=200))
            await desk.buy()
        assert desk.requests() == {ORDERS: 4}
        clock.advance(timedelta(seconds=1))  # the quote is older than quote_reuse_seconds (1) now
        await desk.check()
        assert desk.requests() == {QUOTES: 1}
        clock.advance(timedelta(seconds=2))  # and the account older than account_reuse_seconds (2)
        await desk.check()
        assert desk.requests() == {ACCOUNT: 1, QUOTES: 1}
        await desk.check("MSFT")  # another symbol: its own quote
        assert desk.requests() == {QUOTES: 1}


async def test_an_approval_older_than_its_quote_executes_on_the_quote_kept_since_for_its_symbol(
    database_url: str, clock: FixedClock
) -> None:
    """execute_trade's statement finds the approval's symbol itself (ADR 0013): the quote another check of that
    symbol kept since is the one it uses."""
    async with desks(database_url, clock) as [desk]:
        first = await desk.check()
        clock.advance(timedelta(milliseconds=1500))  # the approval's own quote is older than quote_reuse (1 s)
        await desk.check()  # reads the quote again, and keeps it
        desk.requests()
        done = await desk.call("execute_trade", approval_id=first["approval_id"])
        assert done["status"] == "filled", done
        assert desk.requests() == {ORDERS: 1}  # no quote asked: the kept one answered


async def test_a_fill_carries_the_account_to_what_the_broker_then_says(database_url: str, clock: FixedClock) -> None:
    async with desks(database_url, clock) as [desk]:
        await desk.buy("AAPL", "3")
        await desk.buy("MSFT", "2")
        cash, buying_power, current = await view(database_url)
        assert current and (cash, buying_power) == await desk.broker_account()


async def test_settings_of_zero_ask_the_broker_every_time(database_url: str, clock: FixedClock) -> None:
    async with desks(database_url, clock, account_reuse_seconds=0, quote_reuse_seconds=0) as [desk]:
        await desk.buy()
        await desk.buy()
        assert desk.requests() == {ACCOUNT: 4, QUOTES: 4, ORDERS: 2}  # at the check and at execution


async def test_a_sync_that_finds_a_difference_leaves_the_account_behind(database_url: str, clock: FixedClock) -> None:
    async with desks(database_url, clock) as [desk]:
        await desk.buy()
        desk.emulator.set_position("KO", Decimal(50), Decimal(60))  # bought elsewhere
        synced = await desk.call("sync_positions")
        assert synced["changes_made"] and synced["missing_added"] == ["KO"], synced
        assert (await view(database_url))[2] is False
        desk.requests()
        await desk.check()
        assert desk.requests() == {ACCOUNT: 1}


async def test_a_fill_booked_by_another_server_carries_the_view_both_see(database_url: str, clock: FixedClock) -> None:
    async with desks(database_url, clock, n=2) as [one, other]:
        await one.check()
        assert one.requests() == {ACCOUNT: 1, QUOTES: 1}
        await other.buy("AAPL", "4")  # the other server reads nothing: the views are in the book
        assert other.requests() == {ORDERS: 1}
        await one.check()
        assert one.requests() == {}
        cash, buying_power, current = await view(database_url)
        assert current and (cash, buying_power) == await one.broker_account()


async def test_a_control_of_the_simulated_exchange_makes_the_next_check_read_again(
    sim: SimExchange, ctl: SimControls, server: Any, clock: FixedClock
) -> None:
    async with Client(server) as client:

        async def check(stop: str) -> dict[str, Any]:
            args = {"symbol": "AAPL", "side": "buy", "quantity": "1", "order_type": "market", "stop_loss": stop}
            result = await client.call_tool("check_risk", args)
            if result.is_error:
                return {"error": str(result.content)}
            assert isinstance(result.structured_content, dict)
            return result.structured_content

        def value(decision: dict[str, Any]) -> Decimal:
            return Decimal(next(c["actual"] for c in decision["checks"] if c["rule"] == "min_order_value"))

        await ctl.pin_price("AAPL", Decimal(160))
        first = await check("150")
        assert first["approved"] and Decimal(159) < value(first) < Decimal(161), first["reasons"]
        await ctl.fault("get_account", "error")  # armed after the account was kept: the next check reads
        assert "injected error" in (await check("150"))["error"]
        await ctl.clear_faults()
        await ctl.pin_price("AAPL", Decimal(170))  # a pinned price: the next check quotes again
        again = await check("160")
        assert again["approved"] and Decimal(169) < value(again) < Decimal(171), again["reasons"]
