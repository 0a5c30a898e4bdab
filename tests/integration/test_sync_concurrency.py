"""A sync and the order path never interleave on one book: the sync holds the market's execution lane for its
whole read-diff-apply, fills wait for it, and whatever ran concurrently, the book ends equal to the broker."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import anyio
import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime, assemble
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.sync import SyncResult
from catalyst_mcp.store.db import connect
from catalyst_mcp.store.lane import Lane

D = Decimal
SYMBOLS = ("AAPL", "KO", "JPM", "MSFT", "NVDA")


async def sync(rt: Runtime) -> SyncResult:
    return await assemble(rt).sync.sync_positions(
        dry_run=False, force=False, cycle_id=None, caller=Caller("concurrent")
    )


async def book(rt: Runtime) -> dict[str, Decimal]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT symbol, quantity FROM positions WHERE status = 'open'")
    return {r["symbol"]: r["quantity"] for r in rows}


async def broker(rt: Runtime) -> dict[str, Decimal]:
    return {p.symbol: p.quantity for p in await rt.broker.get_positions()}


async def test_a_sync_waits_for_the_lane_held_by_another_process_and_then_sees_what_it_committed(
    runtime: Runtime, database_url: str
) -> None:
    await SimControls(cast(SimExchange, runtime.broker)).set_position("KO", D(5), D("60"))
    other_process = Lane(runtime.profile.market, functools.partial(connect, database_url))
    results: list[SyncResult] = []

    async def run() -> None:
        results.append(await sync(runtime))

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg, other_process.hold() as holder:
                # As a fill being booked would: the position appears while the lane is held.
                await holder.execute(
                    """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at,
                                                  updated_at)
                           VALUES ('US', 'KO', 'long', 5, 60, now(), now())"""
                )
                tg.start_soon(run)
                # Until the sync waits at the lock (each poll is a query: no sleeping).
                while not await holder.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ):
                    await anyio.lowlevel.checkpoint()
                assert results == []
    finally:
        await other_process.close()
    (result,) = results
    assert result.plan.is_empty and not result.changes_made  # it saw KO: nothing missing, nothing duplicated
    assert await book(runtime) == {"KO": D(5)}


@pytest.fixture
async def client(server: Any) -> AsyncIterator[Client]:
    async with Client(server) as c:
        yield c


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_syncs_running_during_executions_never_correct_the_book_and_it_ends_equal_to_the_broker(
    client: Client, runtime: Runtime, clock: FixedClock
) -> None:
    await SimControls(cast(SimExchange, runtime.broker)).set_position("XOM", D(7), D("115"))
    await sync(runtime)  # XOM is now in the book; everything after this comes from fills
    approvals = []
    for symbol in SYMBOLS:
        quote = await call(client, "get_quote", symbol=symbol)
        stop = str((D(quote["bid"]) * D("0.95")).quantize(D("0.01")))
        decision = await call(
            client, "check_risk", symbol=symbol, side="buy", quantity="3", order_type="market", stop_loss=stop
        )
        assert decision["approved"], decision["reasons"]
        approvals.append(decision["approval_id"])
    syncs: list[SyncResult] = []
    executed = 0
    all_done = anyio.Event()

    async def execute(approval_id: str) -> None:
        nonlocal executed
        assert (await call(client, "execute_trade", approval_id=approval_id))["status"] == "filled"
        executed += 1
        if executed == len(approvals):
            all_done.set()

    async def keep_syncing() -> None:  # a sync at every stage of every execution
        while not all_done.is_set():
            syncs.append(await sync(runtime))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_syncing)
            tg.start_soon(keep_syncing)
            for approval_id in approvals:
                tg.start_soon(execute, approval_id)

    assert syncs
    for result in syncs:
        assert result.refused is None
        assert result.plan.changes == () and not result.changes_made, result.details
    expected = {"XOM": D(7), **{s: D(3) for s in SYMBOLS}}
    assert await book(runtime) == expected == await broker(runtime)
    clock.advance(timedelta(seconds=1))
    assert (await sync(runtime)).plan.is_empty
