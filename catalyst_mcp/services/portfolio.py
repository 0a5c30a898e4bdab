"""get_portfolio (the account from the broker and the book from PostgreSQL, marked to market), the book as
recorded, and the market data tools (scan_market, stored with its cycle; get_quote)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from catalyst_mcp.domain.models import Account, Position, Quote
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData
from catalyst_mcp.services.reading import concurrently, start_equity
from catalyst_mcp.signals.scanner import ScanCriteria, ScanResult, default_criteria, rank, session_fraction
from catalyst_mcp.store import book, orders, scans
from catalyst_mcp.store.db import Database

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


@dataclass(frozen=True, slots=True)
class ScanReport:
    scan_id: int
    at: datetime
    source: str  # where the data came from (``simulated``, ``alpaca-iex``)
    result: ScanResult


@dataclass(frozen=True, slots=True)
class PortfolioService:
    db: Database
    broker: Broker
    market_data: MarketData
    clock: Clock
    profile: MarketProfile
    scanner: ScanCriteria | None = None  # the market's defaults unless given
    universe: tuple[str, ...] | None = None  # the symbols scanned; None: the market data's own list

    async def get_portfolio(self) -> Portfolio:
        """The book with its working protection, marked with one batch of quotes read alongside the account."""
        market = self.profile.market
        async with self.db.connection() as conn:
            held = await book.open_positions(conn, market)
            legs = await orders.working_legs(conn, market) if held else {}
        symbols = [p.symbol for p in held]

        async def quotes_of() -> dict[str, Quote]:
            return await self.market_data.get_quotes(symbols) if symbols else {}

        account, quotes = await concurrently(self.broker.get_account, quotes_of)
        if account.last_equity is not None:
            start = account.last_equity
        else:
            day = (await self.broker.now()).astimezone(self.profile.timezone).date()
            async with self.db.connection() as conn:
                start = await start_equity(conn, market, account, day, self.clock.now())
        day_pnl = account.equity - start
        marked = tuple(mark(p, quotes.get(p.symbol), legs.get(p.symbol, (None, None))) for p in held)
        return Portfolio(account, day_pnl.quantize(_CENT), marked)

    async def book(self) -> list[Position]:
        """The open positions as recorded (not marked to market)."""
        async with self.db.connection() as conn:
            return await book.open_positions(conn, self.profile.market)

    async def scan(self, limit: int, cycle_id: str | None = None) -> ScanReport:
        """Rank the universe's rows with the scanner's tiers (relative volume against the share of today's
        session gone by) and store the scan with its cycle."""
        rows = await self.market_data.scan_rows(self.universe)
        now = await self.broker.now()
        fraction = session_fraction(self.profile.session_intervals(self.profile.latest_session(now)), now)
        criteria = self.scanner if self.scanner is not None else default_criteria(self.profile.market)
        result = rank(rows, criteria, limit, fraction=fraction)
        at, source = self.clock.now(), self.market_data.source
        async with self.db.connection() as conn:
            scan_id = await scans.insert(
                conn, market=self.profile.market, cycle_id=cycle_id, at=at, source=source, result=result
            )
        return ScanReport(scan_id, at, source, result)

    def lot_size(self, symbol: str) -> Decimal:
        """The board lot of ``symbol`` (canonical) as the market data knows it."""
        return self.market_data.lot_size(symbol)

    async def quote(self, symbol: str) -> Quote | None:
        return await self.market_data.get_quote(symbol)
