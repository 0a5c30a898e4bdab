"""The risk snapshot, read while the execution lane is held: the book in one statement on the lane's
connection, with the account and the symbol's quote as the broker last said them while they are recent and
still true (``store/views.py``, ADR 0012); the broker is asked only for what they cannot answer, at the check
and at execution alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
        profile, broker, market_data, hints = self.profile, self.broker, self.market_data, self.hints
        wall = self.clock.now()
        market_now = await broker.now()
        local = market_now.astimezone(profile.timezone)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        account_reuse, quote_reuse = self.account_reuse, self.quote_reuse
        ask_account = hints.expired(hints.account_read, wall, account_reuse)
        ask_quote = known_quote is None and hints.expired(hints.quotes_read.get(intent.symbol), wall, quote_reuse)

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
                symbol=intent.symbol,
                account_since=wall - account_reuse if account_reuse > timedelta(0) else None,
                quote_since=wall - quote_reuse if quote_reuse > timedelta(0) else None,
            )

        async def nothing() -> None:
            return None

        async def read_quote() -> Quote | None:
            return await market_data.get_quote(intent.symbol)

        book, is_open, asked_account, asked_quote = await concurrently(
            read_book,
            broker.is_market_open,
            broker.get_account if ask_account else nothing,
            read_quote if ask_quote else nothing,
        )
        account: Account | None = asked_account or book.account_view
        quote: Quote | None = known_quote or asked_quote or book.quote_view
        quote_missing = quote is None and not ask_quote  # an unknown symbol, when asked, stays without a quote
        if account is None or quote_missing:  # the views could not answer after all: ask the broker now
            late_account, late_quote = await concurrently(
                broker.get_account if account is None else nothing, read_quote if quote_missing else nothing
            )
            account, asked_account = account or late_account, asked_account or late_account
            quote, asked_quote = quote or late_quote, asked_quote or late_quote
        assert account is not None
        kept_account = asked_account if account_reuse > timedelta(0) else None
        kept_quote = asked_quote if quote_reuse > timedelta(0) else None
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
            at_execution=exclude_approval is not None,
        )
        return Reading(snapshot, book)
