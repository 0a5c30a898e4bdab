"""The risk snapshot, read while the execution lane is held: the book in one statement on the lane's
connection, and the broker's quote and account alongside it. At execution the account read for the approval
is reused when the book's version shows nothing of ours changed at the broker since, and the approval is
younger than ``account_reuse_seconds``: the broker is then asked for the quote and the order only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.models import Account, OrderIntent, Quote
from catalyst_mcp.risk.engine import RiskSnapshot
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import book_snapshot, risk_repo
from catalyst_mcp.store.book_snapshot import BookSnapshot

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reading:
    snapshot: RiskSnapshot
    book: BookSnapshot


async def concurrently(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls at once and return their results in order. A failure surfaces as itself (the first
    one), never as an exception group, and the calls still running are cancelled."""
    tasks = [asyncio.ensure_future(call()) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _minutes_to_close(rt: Runtime, market_now: datetime) -> Decimal | None:
    bounds = rt.profile.session_bounds(market_now.astimezone(rt.profile.timezone).date())
    if bounds is None or not bounds[0] <= market_now < bounds[1]:
        return None
    return Decimal((bounds[1] - market_now).total_seconds()) / 60


async def read_snapshot(
    rt: Runtime,
    conn: asyncpg.Connection,
    intent: OrderIntent,
    *,
    cycle_mode: CycleMode | None,
    exclude_approval: UUID | None = None,
    approved_reference: Decimal | None = None,
    known_account: tuple[int, Account] | None = None,
    known_quote: Quote | None = None,
    agent_id: str | None = None,
) -> Reading:
    """Everything the rules need. ``conn`` is the lane's: the book part is one consistent statement."""
    wall = rt.clock.now()
    market_now = await rt.broker.now()
    local = market_now.astimezone(rt.profile.timezone)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    quote: Quote | None = None
    is_open = False

    async def read_quote() -> None:
        nonlocal quote
        quote = known_quote if known_quote is not None else await rt.market_data.get_quote(intent.symbol)

    async def read_open() -> None:
        nonlocal is_open
        is_open = await rt.broker.is_market_open()

    async def read_book() -> BookSnapshot:
        return await book_snapshot.read_book_snapshot(
            conn,
            rt.profile.market,
            now=wall,
            day_start=day_start,
            trading_day=local.date(),
            recent_since=wall - timedelta(seconds=rt.settings.risk.duplicate_window_seconds),
            exclude_approval=exclude_approval,
            agent_id=agent_id,
        )

    async def read_book_and_account() -> tuple[BookSnapshot, Account]:
        book = await read_book()
        if known_account is not None and known_account[0] == book.version:
            return book, known_account[1]
        return book, await rt.broker.get_account()

    _, _, (book, account) = await concurrently(read_quote, read_open, read_book_and_account)
    start_equity = account.last_equity if account.last_equity is not None else book.start_equity
    if start_equity is None:
        start_equity = await risk_repo.start_of_day_equity(conn, rt.profile.market, local.date(), account.equity, wall)
    snapshot = RiskSnapshot(
        intent=intent,
        quote=quote,
        lot_size=rt.market_data.lot_size(intent.symbol) if quote is not None else None,
        account=account,
        positions=book.positions,
        market_open=is_open,
        trading_state=book.state,
        now=wall,
        minutes_to_close=_minutes_to_close(rt, market_now),
        open_orders=book.working,
        start_of_day_equity=start_equity,
        last_sync_ok=book.last_sync_ok,
        recent_orders=book.recent,
        orders_today=book.orders_today,
        orders_last_minute=book.orders_last_minute,
        market_now=market_now,
        approved_reference=approved_reference,
        approvals=book.approvals,
        cycle_mode=cycle_mode,
        at_execution=exclude_approval is not None,
    )
    return Reading(snapshot, book)
