"""The risk snapshot, read while the execution lane is held: the book in one statement on the lane's
connection, with the account and the symbol's quote as the broker last said them while they are recent and
still true (``store/views.py``, ADR 0012); the broker is asked only for what they cannot answer, at the check
and at execution alike. That statement usually takes the lane's lock itself (``Lane.hold_reading``, ADR 0013):
``holding`` for a check, ``plan`` and ``complete`` for an execution, whose statement also reads the approval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from catalyst_mcp.domain.enums import CycleMode, Market
from catalyst_mcp.domain.models import Account, OrderIntent, Quote
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.risk.engine import RiskSnapshot
from catalyst_mcp.store import book_snapshot, trading_state, views
from catalyst_mcp.store.book_snapshot import BookSnapshot
from catalyst_mcp.store.db import Conn
from catalyst_mcp.store.lane import Lane


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


class _Hints:
    """Process-local guesses of whether the kept views will answer: when the views this process last saw were
    read from the broker. A view probably expired is asked of the broker while the book is read rather than
    after it; one never seen is looked for first. A wrong guess costs time, never correctness: what decides is
    the view the snapshot returns."""

    def __init__(self) -> None:
        self.account_read: datetime | None = None
        self.quotes_read: dict[str, datetime] = {}

    @staticmethod
    def expired(read_at: datetime | None, now: datetime, reuse: timedelta) -> bool:
        return reuse <= timedelta(0) or (read_at is not None and not read_at <= now < read_at + reuse)

    def seen(self, symbol: str, account_read: datetime | None, quote_read: datetime | None) -> None:
        if account_read is not None:
            self.account_read = account_read
        if quote_read is not None:
            if len(self.quotes_read) > 4096:
                self.quotes_read.clear()
            self.quotes_read[symbol] = quote_read


@dataclass(frozen=True, slots=True)
class Plan:
    """A read's times, what to ask the broker alongside the book, and the book's statement."""

    wall: datetime
    market_now: datetime
    ask_account: bool
    ask_quote: bool
    at_execution: bool  # the re-check of an approval (its own reservation left out)
    query: tuple[str, tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class SnapshotReader:
    profile: MarketProfile
    clock: Clock
    broker: Broker
    market_data: MarketData
    duplicate_window: timedelta
    account_reuse: timedelta = timedelta(0)
    quote_reuse: timedelta = timedelta(0)
    hints: _Hints = field(default_factory=_Hints)

    async def read(
        self,
        conn: Conn,
        intent: OrderIntent,
        *,
        cycle_mode: CycleMode | None,
        exclude_approval: UUID | None = None,
        approved_reference: Decimal | None = None,
        known_quote: Quote | None = None,
        agent_id: str | None = None,
    ) -> Reading:
        """Everything the rules need. ``conn`` is the lane's: the book part is one consistent statement, and it
        brings the account and the quote as the broker last said them while they are recent and still true
        (``store/views.py``); only what it cannot answer is asked of the broker, and kept for the next reads."""
        plan = await self._plan(intent.symbol, exclude_approval, agent_id, known_quote=known_quote, asking=True)
        broker = self.broker

        async def read_book() -> BookSnapshot:
            sql, args = plan.query
            row = await conn.fetchrow(sql, *args)
            assert row is not None
            return book_snapshot.snapshot_of(row, intent.symbol)

        async def nothing() -> None:
            return None

        async def read_quote() -> Quote | None:
            return await self.market_data.get_quote(intent.symbol)

        book, is_open, asked_account, asked_quote = await concurrently(
            read_book,
            broker.is_market_open,
            broker.get_account if plan.ask_account else nothing,
            read_quote if plan.ask_quote else nothing,
        )
        return await self._complete(
            conn, plan, intent, book, is_open, asked_account, asked_quote, cycle_mode, known_quote, approved_reference
        )

    @asynccontextmanager
    async def holding(
        self, lane: Lane, intent: OrderIntent, *, cycle_mode: CycleMode | None, agent_id: str | None
    ) -> AsyncIterator[tuple[Conn, Reading]]:
        """Hold ``lane`` and read: yields its connection and the reading. When the kept views are expected to
        answer, the book's statement takes the lane's lock itself (``Lane.hold_reading``): one round trip;
        otherwise the lock comes first and the broker is asked while the book is read."""
        hints, wall = self.hints, self.clock.now()
        if hints.expired(hints.account_read, wall, self.account_reuse) or hints.expired(
            hints.quotes_read.get(intent.symbol), wall, self.quote_reuse
        ):
            async with lane.hold() as conn:
                yield conn, await self.read(conn, intent, cycle_mode=cycle_mode, agent_id=agent_id)
            return
        planned: list[Plan] = []

        async def query() -> tuple[str, tuple[object, ...]]:
            planned.append(await self._plan(intent.symbol, None, agent_id))
            return planned[-1].query

        async with lane.hold_reading(query) as (conn, row):
            book = book_snapshot.snapshot_of(row, intent.symbol)
            yield conn, await self.complete(conn, planned[-1], intent, book, cycle_mode=cycle_mode)

    async def plan(self, exclude_approval: UUID, agent_id: str) -> Plan:
        """The read of an approval's re-check, to be made by the statement that also reads the approval
        (``book_snapshot.snapshot_with_execution``): the approval's symbol is found by the statement, and the
        broker is asked afterwards for what the views cannot answer (``complete``)."""
        return await self._plan(None, exclude_approval, agent_id)

    async def complete(
        self,
        conn: Conn,
        plan: Plan,
        intent: OrderIntent,
        book: BookSnapshot,
        *,
        cycle_mode: CycleMode | None,
        approved_reference: Decimal | None = None,
        known_quote: Quote | None = None,
    ) -> Reading:
        """The reading from a book read by ``plan``'s statement (nothing was asked of the broker alongside it)."""
        is_open = await self.broker.is_market_open()
        return await self._complete(
            conn, plan, intent, book, is_open, None, None, cycle_mode, known_quote, approved_reference
        )

    async def _plan(
        self,
        symbol: str | None,
        exclude_approval: UUID | None,
        agent_id: str | None,
        *,
        known_quote: Quote | None = None,
        asking: bool = False,
    ) -> Plan:
        """The read's times and statement; with ``asking``, what to ask the broker alongside the book (the
        views that probably expired). ``symbol`` None: the approval ``exclude_approval``'s."""
        profile, hints = self.profile, self.hints
        wall = self.clock.now()
        market_now = await self.broker.now()
        local = market_now.astimezone(profile.timezone)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        account_reuse, quote_reuse = self.account_reuse, self.quote_reuse
        query = book_snapshot.snapshot_query(
            profile.market,
            now=wall,
            day_start=day_start,
            trading_day=local.date(),
            recent_since=wall - self.duplicate_window,
            exclude_approval=exclude_approval,
            agent_id=agent_id,
            symbol=symbol,
            account_since=wall - account_reuse if account_reuse > timedelta(0) else None,
            quote_since=wall - quote_reuse if quote_reuse > timedelta(0) else None,
        )
        quote_read = hints.quotes_read.get(symbol) if symbol is not None else None
        return Plan(
            wall,
            market_now,
            asking and hints.expired(hints.account_read, wall, account_reuse),
            asking and known_quote is None and hints.expired(quote_read, wall, quote_reuse),
            exclude_approval is not None,
            query,
        )

    async def _complete(
        self,
        conn: Conn,
        plan: Plan,
        intent: OrderIntent,
        book: BookSnapshot,
        is_open: bool,
        asked_account: Account | None,
        asked_quote: Quote | None,
        cycle_mode: CycleMode | None,
        known_quote: Quote | None,
        approved_reference: Decimal | None,
    ) -> Reading:
        """The reading, from the book and what the broker was asked: what the views could not answer after all
        is asked now; what was asked is kept."""
        profile, broker, market_data, hints = self.profile, self.broker, self.market_data, self.hints
        wall, market_now = plan.wall, plan.market_now
        local = market_now.astimezone(profile.timezone)

        async def nothing() -> None:
            return None

        async def read_quote() -> Quote | None:
            return await market_data.get_quote(intent.symbol)

        account: Account | None = asked_account or book.account_view
        quote: Quote | None = known_quote or asked_quote or book.quote_view
        quote_missing = quote is None and not plan.ask_quote  # an unknown symbol, when asked, stays without a quote
        if account is None or quote_missing:  # the views could not answer after all: ask the broker now
            late_account, late_quote = await concurrently(
                broker.get_account if account is None else nothing, read_quote if quote_missing else nothing
            )
            account, asked_account = account or late_account, asked_account or late_account
            quote, asked_quote = quote or late_quote, asked_quote or late_quote
        assert account is not None
        kept_account = asked_account if self.account_reuse > timedelta(0) else None
        kept_quote = asked_quote if self.quote_reuse > timedelta(0) else None
        if kept_account is not None or kept_quote is not None:
            await views.keep(
                conn,
                profile.market,
                read_at=wall,
                version=book.version,
                epoch=book.epoch,
                account=kept_account,
                quote=kept_quote,
            )
        hints.seen(
            intent.symbol,
            wall if kept_account is not None else book.account_read_at,
            wall if kept_quote is not None else book.quote_read_at,
        )
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
            at_execution=plan.at_execution,
        )
        return Reading(snapshot, book)
