"""Crash consistency (issue 14): a server process killed with SIGKILL in the middle of ``execute_trade``,
``sync_positions`` or ``complete_cycle``, then a new one started on the same database, leaves the book equal to
the broker after reconciliation, no order sent twice and no approval lost.

No timers: the kill moment is chosen by observing the database. The test holds a row or table lock that the
server's next step needs, waits until the server is blocked on it (or until a row it writes exists), kills it,
and only then releases the lock. The checks are those of ``tests/crashing.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.crashing import (
    Server,
    approve_buy,
    book_and_broker,
    call,
    check_recovery,
    clear_faults,
    end_sessions_blocked_by,
    fetch,
    holding,
    must,
    set_broker_position,
    shutdown,
    sigkill,
    start_server,
    wait_for_row,
    wait_until_blocked_by,
)

pytestmark = pytest.mark.anyio

WAIT_S = 30.0
ORDER_OF = "SELECT status, client_order_id FROM orders WHERE approval_id = $1::uuid"
# The simulated exchange takes its account's row lock for every order it accepts.
ACCOUNT_LOCK = "SELECT 1 FROM sim.accounts WHERE market = 'US' FOR UPDATE"
# The book's row of an approval's order: recording the broker's answer updates it.
ORDER_LOCK = "SELECT 1 FROM orders WHERE approval_id = $1::uuid FOR UPDATE"


@asynccontextmanager
async def one_server(database_url: str) -> AsyncIterator[Server]:
    server = await start_server(database_url)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            shutdown(server)


async def call_until_killed(url: str, tool: str, args: dict[str, Any], out: dict[str, Any]) -> None:
    """A call the kill interrupts: whatever happens to it is kept in ``out`` (never raised)."""
    with anyio.move_on_after(WAIT_S):
        try:
            async with Client(url) as client:
                answer = await call(client, tool, args)
                out["answer"] = answer
        except Exception as exc:  # the server died under the call: expected
            out["error"] = f"{type(exc).__name__}: {exc}"


async def approval_for(database_url: str, symbol: str = "AAPL", quantity: int = 5) -> tuple[Server, str]:
    server = await start_server(database_url)
    try:
        async with Client(server.url) as client:
            approval_id = await approve_buy(client, symbol, quantity)
        assert approval_id is not None, "the buy was refused"
    except BaseException:
        shutdown(server)  # a failed test leaves no server running behind it
        raise
    return server, approval_id


async def restart_and_check(database_url: str, approvals: list[str]) -> dict[str, Any]:
    """A new server on the database; every check; the first replay's answer of the first approval."""
    await clear_faults(database_url)
    async with one_server(database_url) as server:
        verdict = await check_recovery(server.url, database_url, approvals)
    assert not verdict.problems, "\n".join(verdict.problems)
    assert verdict.replays == len(approvals)
    return dict(verdict.answers)


async def broker_orders(database_url: str, client_order_id: str) -> int:
    rows = await fetch(database_url, "SELECT count(*) AS n FROM sim.orders WHERE client_order_id = $1", client_order_id)
    return int(rows[0]["n"])


async def test_execute_trade_killed_before_the_broker_acted(database_url: str) -> None:
    """Killed after the order's intent was committed, while the broker call waits: the broker never got the
    order. The replay sends it once."""
    server, approval_id = await approval_for(database_url)
    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as tg, holding(database_url, ACCOUNT_LOCK) as sim_lock:
        tg.start_soon(call_until_killed, server.url, "execute_trade", {"approval_id": approval_id}, outcome)
        order = await wait_for_row(database_url, ORDER_OF, approval_id, within_s=WAIT_S)
        await wait_until_blocked_by(database_url, sim_lock.pid, within_s=WAIT_S)
        assert sigkill(server)
    assert "answer" not in outcome, f"the call ended before the kill: {outcome}"
    assert order["status"] == "pending"
    assert await broker_orders(database_url, order["client_order_id"]) == 0, "the kill came too late"

    answers = await restart_and_check(database_url, [approval_id])
    assert answers == {"filled": 1}
    assert await broker_orders(database_url, order["client_order_id"]) == 1
    book, broker = await book_and_broker(database_url)
    assert book == broker == {"AAPL": Decimal(5)}


async def test_execute_trade_killed_after_the_broker_acted(database_url: str) -> None:
    """Killed after the broker filled the order but before the book recorded its answer. The replay finds it
    at the broker by its client order id: the same order, never a second one."""
    server, approval_id = await approval_for(database_url)
    outcome: dict[str, Any] = {}
    async with anyio.create_task_group() as tg, holding(database_url, ACCOUNT_LOCK) as sim_lock:
        tg.start_soon(call_until_killed, server.url, "execute_trade", {"approval_id": approval_id}, outcome)
        order = await wait_for_row(database_url, ORDER_OF, approval_id, within_s=WAIT_S)
        await wait_until_blocked_by(database_url, sim_lock.pid, within_s=WAIT_S)
        # Hold the book's order row, then let the broker act: its answer cannot be recorded.
        async with holding(database_url, ORDER_LOCK, approval_id) as order_lock:
            await sim_lock.release()
            await wait_for_row(
                database_url,
                "SELECT 1 FROM sim.orders WHERE client_order_id = $1",
                order["client_order_id"],
                within_s=WAIT_S,
            )
            await wait_until_blocked_by(database_url, order_lock.pid, within_s=WAIT_S)
            assert sigkill(server)
            # The booking is one statement: sent before the kill, it would commit once the lock is freed.
            assert await end_sessions_blocked_by(database_url, order_lock.pid) == 1
    assert "answer" not in outcome, f"the call ended before the kill: {outcome}"
    [still] = await fetch(database_url, ORDER_OF, approval_id)
    assert still["status"] == "pending", "the book recorded the answer before the kill"
    book, broker_book = await book_and_broker(database_url)
    assert book == {} and broker_book == {"AAPL": Decimal(5)}

    answers = await restart_and_check(database_url, [approval_id])
    assert answers == {"filled": 1}
    assert await broker_orders(database_url, order["client_order_id"]) == 1


async def test_complete_cycle_then_sync_positions_killed(database_url: str) -> None:
    """Killed while completing a cycle that traded: nothing of the completion remains, the cycle's approvals
    replay in it after the restart (the executed one to its order, the other to a first execution), and the
    cycle then completes. The restarted server is then killed inside sync_positions (one restart fewer than
    two tests)."""
    server = await start_server(database_url)
    async with Client(server.url) as client:
        cycle_id = str((await must(client, "start_cycle", {"force": True}))["cycle_id"])
        bought = await approve_buy(client, "AAPL", 3, cycle_id)
        unexecuted = await approve_buy(client, "MSFT", 2, cycle_id)
        assert bought is not None and unexecuted is not None
        done = await must(client, "execute_trade", {"approval_id": bought, "cycle_id": cycle_id})
        assert done["status"] == "filled", done
    outcome: dict[str, Any] = {}
    lock_cycle = "SELECT 1 FROM cycles WHERE cycle_id = $1 FOR UPDATE"
    async with anyio.create_task_group() as tg, holding(database_url, lock_cycle, cycle_id) as row:
        tg.start_soon(call_until_killed, server.url, "complete_cycle", {"cycle_id": cycle_id}, outcome)
        await wait_until_blocked_by(database_url, row.pid, within_s=WAIT_S)
        assert sigkill(server)
    assert "answer" not in outcome, f"the call ended before the kill: {outcome}"
    [cycle] = await fetch(database_url, "SELECT status FROM cycles WHERE cycle_id = $1", cycle_id)
    assert cycle["status"] == "active", "half a completion remained"

    again = await start_server(database_url)
    try:
        # The cycle is still active: its approvals replay in it (the executed one answers its order, the other
        # is executed now), then it completes.
        verdict = await check_recovery(again.url, database_url, [bought, unexecuted])
        async with Client(again.url) as client:
            completed = await call(client, "complete_cycle", {"cycle_id": cycle_id})
        assert not verdict.problems, "\n".join(verdict.problems)
        assert verdict.answers == {"filled": 2}, verdict.answers
        assert completed.ok and completed.data["status"] == "completed", completed
        await kill_during_sync(database_url, again)
    finally:
        if again.proc.poll() is None:
            shutdown(again)


async def kill_during_sync(database_url: str, server: Server) -> None:
    """Killed inside the sync's transaction (7 NVDA bought elsewhere to apply): nothing of it remains, and the
    next sync makes book == broker."""
    before, _ = await book_and_broker(database_url)
    async with Client(server.url) as client:
        quote = await must(client, "get_quote", {"symbol": "NVDA"})
    await set_broker_position(database_url, "NVDA", Decimal(7), Decimal(quote["last"]))
    outcome: dict[str, Any] = {}
    # Reads go on; the sync's record of its run (written with its changes) waits.
    lock_runs = "LOCK TABLE sync_runs IN SHARE MODE"
    async with anyio.create_task_group() as tg, holding(database_url, lock_runs) as runs:
        tg.start_soon(call_until_killed, server.url, "sync_positions", {}, outcome)
        await wait_until_blocked_by(database_url, runs.pid, within_s=WAIT_S)
        assert sigkill(server)
    assert "answer" not in outcome, f"the call ended before the kill: {outcome}"
    book, broker = await book_and_broker(database_url)
    assert book == before and broker == {**before, "NVDA": Decimal(7)}, "half a sync remained"

    await restart_and_check(database_url, [])
    book, broker = await book_and_broker(database_url)
    assert book == broker == {**before, "NVDA": Decimal(7)}
