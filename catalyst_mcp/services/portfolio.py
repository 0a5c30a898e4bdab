"""get_portfolio: the account from the broker and the book from PostgreSQL, marked to market."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from catalyst_mcp.domain.models import Account, Position, Quote
from catalyst_mcp.services.reading import concurrently
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import orders_repo, repos, risk_repo

_CENT = Decimal("0.01")


Protection = tuple[Decimal | None, Decimal | None]  # (stop loss, take profit) working at the broker


@dataclass(frozen=True, slots=True)
class MarkedPosition:
    position: Position
    market_price: Decimal | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    unrealized_pnl_pct: Decimal | None
    stop_loss: Decimal | None = None  # the stop working at the broker, if any
    take_profit: Decimal | None = None  # the take profit working at the broker, if any


@dataclass(frozen=True, slots=True)
class Portfolio:
    account: Account
    day_pnl: Decimal
    positions: tuple[MarkedPosition, ...]


def mark(position: Position, quote: Quote | None, protection: Protection = (None, None)) -> MarkedPosition:
    if quote is None:
        return MarkedPosition(position, None, None, None, None, *protection)
    price = quote.last
    signed = position.signed_quantity
    value = price * signed
    pnl = (price - position.avg_entry_price) * signed
    cost = position.avg_entry_price * position.quantity
    pct = (pnl / cost * 100).quantize(_CENT) if cost else Decimal(0)
    return MarkedPosition(position, price, value.quantize(_CENT), pnl.quantize(_CENT), pct, *protection)


async def get_portfolio(rt: Runtime) -> Portfolio:
    """The book with its working protection, marked with one batch of quotes read alongside the account."""
    async with rt.pool.acquire() as conn:
        book = await repos.open_positions(conn, rt.profile.market)
        legs = await orders_repo.working_legs(conn, rt.profile.market) if book else {}
    symbols = [p.symbol for p in book]

    async def quotes_of() -> dict[str, Quote]:
        return await rt.market_data.get_quotes(symbols) if symbols else {}

    account, quotes = await concurrently(rt.broker.get_account, quotes_of)
    if account.last_equity is not None:
        start = account.last_equity
    else:
        day = (await rt.broker.now()).astimezone(rt.profile.timezone).date()
        async with rt.pool.acquire() as conn:
            start = await risk_repo.start_of_day_equity(conn, rt.profile.market, day, account.equity, rt.clock.now())
    day_pnl = account.equity - start
    marked = tuple(mark(p, quotes.get(p.symbol), legs.get(p.symbol, (None, None))) for p in book)
    return Portfolio(account, day_pnl.quantize(_CENT), marked)
