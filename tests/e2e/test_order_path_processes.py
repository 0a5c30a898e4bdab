"""The order path across two server processes on one database (DESIGN §5, invariants 10-12): more concurrent
executes than either process's pool holds all answer, every limit holds afterwards, one position's shares are
sold once, and a replay on the other process is judged like a first execution. Real HTTP servers started as
``catalyst-mcp serve --http --port 0``; the test process reads the database and drives the simulated exchange's
controls directly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.markets.profiles import US_PROFILE
from catalyst_mcp.store.db import create_pool
from tests.e2e.processes import servers_on_a_fresh_database

pytestmark = pytest.mark.anyio

D = Decimal
WAIT_S = 90


@dataclass
class Pair:
    urls: tuple[str, str]
    database_url: str


@pytest.fixture
def servers(pg_uri: str, request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Two server processes on one fresh database, with the risk settings the test is marked with."""
    marker = request.node.get_closest_marker("risk")
    env = {f"CATALYST_RISK__{k.upper()}": str(v) for k, v in (marker.kwargs if marker else {}).items()}
    with servers_on_a_fresh_database(pg_uri, 2, env, prefix="proc") as (urls, database_url):
        yield Pair((urls[0], urls[1]), database_url)


@dataclass
class Outside:
    """The test's own view: the database, and the simulated exchange's controls (as `catalyst-mcp sim`)."""

    pool: asyncpg.Pool
    sim: SimControls

    async def value(self, sql: str, *args: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def book(self) -> dict[str, Decimal]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT symbol, quantity FROM positions WHERE status = 'open'")
        return {r["symbol"]: r["quantity"] for r in rows}

    async def broker(self) -> dict[str, Decimal]:
        return {p.symbol: p.quantity for p in (await self.sim.status()).positions}

    async def entries_sent(self) -> int:
        return int(await self.value("SELECT count(*) FROM sim.orders WHERE client_order_id ~ '^cat-[0-9a-f]{32}$'"))


@asynccontextmanager
async def outside(pair: Pair) -> AsyncIterator[Outside]:
    pool = await create_pool(pair.database_url, max_size=4)
    try:
        exchange = SimExchange(pool, US_PROFILE, seed=7, starting_cash=D(100000), wall_clock=SystemClock())
        yield Outside(pool, SimControls(exchange))
    finally:
        await pool.close()


async def call(url: str, tool: str, **args: Any) -> dict[str, Any]:
    async with Client(url) as client:
        result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool}({args}): {result.content}"
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def approve_buy(url: str, symbol: str, quantity: str) -> str:
    quote = await call(url, "get_quote", symbol=symbol)
    stop = str((D(quote["bid"]) * D("0.95")).quantize(D("0.01")))
    decision = await call(
        url, "check_risk", symbol=symbol, side="buy", quantity=quantity, order_type="market", stop_loss=stop
    )
    assert decision["approved"], decision["reasons"]
    return str(decision["approval_id"])


OPEN_PACE = {"duplicate_window_seconds": 0, "max_orders_per_minute": 100000, "max_trades_per_day": 100000}


@pytest.mark.risk(max_position_value=3000, **OPEN_PACE)
async def test_more_executes_than_either_pool_holds_over_two_processes_all_answer_and_the_limit_holds(
    servers: Pair,
) -> None:
    async with outside(servers) as out:
        # A pinned price: 24 approvals of 2 shares fit under 3000 whatever the time of day (the servers' clocks
        # are real, and so is the simulated price path).
        await out.sim.pin_price("KO", D(62))
        approvals = [await approve_buy(servers.urls[i % 2], "KO", "2") for i in range(24)]
        # Taken elsewhere after the approvals: the room they reserved is no longer all there.
        await out.sim.set_position("KO", D(10))
        await call(servers.urls[0], "sync_positions")
        results: list[dict[str, Any]] = []

        async def execute(i: int, approval_id: str) -> None:
            results.append(await call(servers.urls[i % 2], "execute_trade", approval_id=approval_id))

        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg:
                for i, approval_id in enumerate(approvals):
                    tg.start_soon(execute, i, approval_id)

        assert len(results) == 24, "every call answers"
        filled = [r for r in results if r["status"] == "filled"]
        refused = [r for r in results if r["status"] == "rejected"]
        assert len(filled) + len(refused) == 24 and refused, "some approvals no longer fit"
        assert all("maximum" in (r["reason"] or "") for r in refused)
        value = await out.value(
            "SELECT quantity * avg_entry_price FROM positions WHERE status = 'open' AND symbol = 'KO'"
        )
        quote = await call(servers.urls[0], "get_quote", symbol="KO")
        assert value <= 3000 and (await out.book())["KO"] * D(quote["ask"]) <= D(3000) * D("1.05")
        assert await out.book() == await out.broker()
        assert await out.entries_sent() == len(filled)
        assert await out.value("SELECT count(*) FROM orders WHERE role = 'entry'") == len(filled)


@pytest.mark.risk(**OPEN_PACE)
async def test_concurrent_sells_of_one_position_over_two_processes_send_one_order(servers: Pair) -> None:
    async with outside(servers) as out:
        bought = await call(
            servers.urls[0], "execute_trade", approval_id=await approve_buy(servers.urls[0], "AAPL", "10")
        )
        assert bought["status"] == "filled"
        decisions: list[dict[str, Any]] = []

        async def check(i: int) -> None:
            args = {"symbol": "AAPL", "side": "sell", "quantity": "10", "order_type": "market"}
            decisions.append(await call(servers.urls[i % 2], "check_risk", **args))

        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(check, i)
        approved = [x["approval_id"] for x in decisions if x["approved"]]
        assert len(approved) == 1
        outcomes: list[dict[str, Any]] = []

        async def execute(i: int) -> None:
            outcomes.append(await call(servers.urls[i % 2], "execute_trade", approval_id=approved[0]))

        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(execute, i)

        assert {o["order_id"] for o in outcomes} == {outcomes[0]["order_id"]}
        assert sorted(o["replayed"] for o in outcomes) == [False] + [True] * 5
        sells = await out.value(
            "SELECT count(*) FROM sim.orders WHERE side = 'sell' AND client_order_id ~ '^cat-[0-9a-f]{32}$'"
        )
        assert sells == 1
        assert await out.book() == {} == await out.broker()


@pytest.mark.risk(**OPEN_PACE)
async def test_a_replay_on_the_other_process_after_a_timeout_is_rejected_once_trading_halted(servers: Pair) -> None:
    async with outside(servers) as out:
        approval = await approve_buy(servers.urls[0], "AAPL", "5")
        await out.sim.fault("submit", "timeout", times=1)
        async with Client(servers.urls[0]) as client:
            first = await client.call_tool("execute_trade", {"approval_id": approval})
        assert first.is_error and "not confirmed" in first.content[0].text  # type: ignore[union-attr]
        async with out.pool.acquire() as conn:
            await conn.execute("UPDATE trading_state SET state = 'halted', reason = 'test' WHERE market = 'US'")

        replay = await call(servers.urls[1], "execute_trade", approval_id=approval)

        assert replay["status"] == "rejected" and "halted" in replay["reason"]
        assert await out.entries_sent() == 0
