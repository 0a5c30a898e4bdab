"""The risk snapshot, read while the execution lane is held: the book in one statement on the lane's
connection, and the broker's quote and account alongside it. At execution the account read for the approval
is reused when the book's version shows nothing of ours changed at the broker since, and the approval is
younger than ``account_reuse_seconds``: the broker is then asked for the quote and the order only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from catalyst_mcp.domain.enums import CycleMode, Market
from catalyst_mcp.domain.models import Account, OrderIntent, Quote
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.risk.engine import RiskSnapshot
from catalyst_mcp.store import book_snapshot, trading_state
from catalyst_mcp.store.book_snapshot import BookSnapshot
from catalyst_mcp.store.db import Conn


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


async def start_equity(
    conn: Conn, market: Market, account: Account, day: date, at: datetime, recorded: Decimal | None = None
) -> Decimal:
    """The equity the trading day started with: the broker's own figure (its last close) when it gives one,
    else the first equity we saw that day (``recorded`` when already read), recorded now if this is the first
    look of the day."""
    if account.last_equity is not None:
        return account.last_equity
    if recorded is not None:
        return recorded
    return await trading_state.start_of_day_equity(conn, market, day, account.equity, at)


def _minutes_to_close(profile: MarketProfile, market_now: datetime) -> Decimal | None:
    bounds = profile.session_bounds(market_now.astimezone(profile.timezone).date())
    if bounds is None or not bounds[0] <= market_now < bounds[1]:
        return None
    return Decimal((bounds[1] - market_now).total_seconds()) / 60


@dataclass(frozen=True, slots=True)
class SnapshotReader:
    profile: MarketProfile
    clock: Clock
    broker: Broker
    market_data: MarketData
    duplicate_window: timedelta

    async def read(
        self,
        conn: Conn,
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
        profile, broker, market_data = self.profile, self.broker, self.market_data
        wall = self.clock.now()
        market_now = await broker.now()
        local = market_now.astimezone(profile.timezone)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        quote: Quote | None = None
        is_open = False

        async def read_quote() -> None:
            nonlocal quote
            quote = known_quote if known_quote is not None else await market_data.get_quote(intent.symbol)

        async def read_open() -> None:
            nonlocal is_open
            is_open = await broker.is_market_open()

        async def read_book() -> BookSnapshot:
            return await book_snapshot.read_book_snapshot(
                conn,
                profile.market,
                now=wall,
                day_start=day_start,
                trading_day=local.date(),
                recent_since=wall - self.duplicate_window,
                exclude_approval=exclude_approval,
                agent_id=agent_id,
            )

        async def read_book_and_account() -> tuple[BookSnapshot, Account]:
            if known_account is None:  # nothing to reuse: ask the broker while the book is read
                book, account = await concurrently(read_book, broker.get_account)
                return book, account
            book = await read_book()
            if known_account[0] == book.version:
                return book, known_account[1]
            return book, await broker.get_account()

        _, _, (book, account) = await concurrently(read_quote, read_open, read_book_and_account)
        start = await start_equity(conn, profile.market, account, local.date(), wall, book.start_equity)
        snapshot = RiskSnapshot(
            intent=intent,
            quote=quote,
            lot_size=market_data.lot_size(intent.symbol) if quote is not None else None,
            account=account,
            positions=book.positions,
            market_open=is_open,
            trading_state=book.state,
            now=wall,
            minutes_to_close=_minutes_to_close(profile, market_now),
            open_orders=book.working,
            start_of_day_equity=start,
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
