"""Alpaca market data behind the MarketData port: quotes and snapshots, daily and minute bars, and the
scanner's rows of a watchlist. The SDK's calls run through the broker's runner (worker threads, a bounded
limiter, explicit timeouts, errors translated once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, Literal, Protocol, TypeVar

from alpaca.common.enums import Sort
from alpaca.data.enums import DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models import Bar as AlpacaBar
from alpaca.data.models import Snapshot
from alpaca.data.requests import StockBarsRequest, StockSnapshotRequest
from alpaca.data.timeframe import TimeFrame

from catalyst_mcp.brokers.alpaca_mapping import dec, quantity
from catalyst_mcp.domain.errors import BrokerRejected
from catalyst_mcp.domain.models import Quote
from catalyst_mcp.ports import Clock
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow

T = TypeVar("T")

# Liquid US large caps scanned by default (the SDK has no "whole market" snapshot).
DEFAULT_WATCHLIST: Final = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "MA", "UNH", "XOM", "JNJ", "PG",
    "HD", "KO", "PEP", "COST", "AVGO", "AMD", "NFLX", "CRM", "ORCL", "INTC", "BAC", "WMT", "DIS", "CSCO",
    "ADBE", "QCOM", "BRK.B", "LLY", "ABBV", "CVX", "MRK", "PFE",
)  # fmt: skip
AVERAGE_DAYS: Final = 20  # sessions averaged for a symbol's typical daily volume
_MAX_BARS: Final = 10_000


class SdkRunner(Protocol):
    async def read(self, what: str, call: Callable[[], T]) -> T:
        """Run an idempotent SDK call in a worker thread; failures arrive as domain errors."""
        ...


@dataclass(frozen=True, slots=True)
class PriceBar:
    symbol: str
    at: datetime  # the bar's start
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The latest quote plus today's and the previous day's bars of one symbol."""

    quote: Quote
    day: PriceBar | None
    previous_day: PriceBar | None
    minute: PriceBar | None


def _port_bar(bar: PriceBar) -> Bar | None:
    try:
        return Bar(bar.at, bar.open, bar.high, bar.low, bar.close, bar.volume)
    except ValueError:  # inconsistent (low above high, a negative volume): not a bar to compute with
        return None


def combine_minutes(bars: Sequence[Bar], minutes: int) -> list[Bar]:
    """Minute bars (oldest first) combined into bars of ``minutes``, each starting on a multiple of it."""
    if minutes <= 1:
        return list(bars)
    groups: dict[datetime, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(_bucket(bar.at, minutes), []).append(bar)
    return [_merged(start, group) for start, group in groups.items()]


def _bucket(at: datetime, minutes: int) -> datetime:
    return at.replace(minute=at.minute - at.minute % minutes, second=0, microsecond=0)


def _merged(start: datetime, group: list[Bar]) -> Bar:
    return Bar(
        at=start,
        open=group[0].open,
        high=max(b.high for b in group),
        low=min(b.low for b in group),
        close=group[-1].close,
        volume=sum((b.volume for b in group), Decimal(0)),
    )


def _bar(bar: AlpacaBar | None) -> PriceBar | None:
    if bar is None:
        return None
    return PriceBar(
        bar.symbol, bar.timestamp, dec(bar.open), dec(bar.high), dec(bar.low), dec(bar.close), quantity(bar.volume)
    )


def snapshot_of(raw: Snapshot) -> MarketSnapshot | None:
    """A snapshot as domain values. A side of the quote that is missing or zero (common on the IEX feed)
    is taken from the last trade, so a quote never carries a zero price; None without any price."""
    trade, quote = raw.latest_trade, raw.latest_quote
    bid = dec(quote.bid_price) if quote is not None else Decimal(0)
    ask = dec(quote.ask_price) if quote is not None else Decimal(0)
    if trade is not None and trade.price > 0:
        last = dec(trade.price)
    elif bid > 0 and ask > 0:
        last = (bid + ask) / 2
    else:
        return None
    at = quote.timestamp if quote is not None else trade.timestamp if trade is not None else None
    assert at is not None
    return MarketSnapshot(
        quote=Quote(
            symbol=raw.symbol,
            bid=bid if bid > 0 else last,
            ask=ask if ask > 0 else last,
            last=last,
            bid_size=quantity(quote.bid_size) if quote is not None else Decimal(0),
            ask_size=quantity(quote.ask_size) if quote is not None else Decimal(0),
            at=at,
        ),
        day=_bar(raw.daily_bar),
        previous_day=_bar(raw.previous_daily_bar),
        minute=_bar(raw.minute_bar),
    )


def scan_row_of(snap: MarketSnapshot, avg_volume: Decimal | None) -> ScanRow | None:
    """The scanner's row of a snapshot: last, bid and ask from its quote, the previous close from the previous
    daily bar, today's open and volume from today's; the average daily volume ``avg_volume``, else the previous
    day's volume. None without both daily bars."""
    prev, day = snap.previous_day, snap.day
    if prev is None or day is None:
        return None
    return ScanRow(
        symbol=snap.quote.symbol,
        last=snap.quote.last,
        prev_close=prev.close,
        open=day.open,
        volume=day.volume,
        avg_volume=avg_volume if avg_volume is not None else prev.volume,
        bid=snap.quote.bid,
        ask=snap.quote.ask,
    )


def average_volume(bars: Sequence[PriceBar], before: datetime, days: int = AVERAGE_DAYS) -> Decimal | None:
    """The mean volume of the last ``days`` daily bars starting before ``before`` (today's left out); None
    without any."""
    earlier = sorted((b for b in bars if b.at < before), key=lambda b: b.at)[-days:]
    if not earlier:
        return None
    return sum((b.volume for b in earlier), Decimal(0)) / len(earlier)


class AlpacaMarketData:
    """Quotes, snapshots and bars from Alpaca's market-data API (IEX feed unless configured otherwise)."""

    def __init__(
        self,
        client: StockHistoricalDataClient,
        run: SdkRunner,
        *,
        feed: str,
        clock: Clock,
        watchlist: Sequence[str] = DEFAULT_WATCHLIST,
    ) -> None:
        self._client = client
        self._run = run
        self._feed = DataFeed(feed)
        self._clock = clock
        self._watchlist = tuple(watchlist)

    @property
    def source(self) -> str:
        return f"alpaca-{self._feed.value}"

    def lot_size(self, symbol: str) -> Decimal:
        return Decimal(1)  # US equities trade in single shares

    async def get_quote(self, symbol: str) -> Quote | None:
        try:
            snaps = await self.get_snapshots([symbol])
        except BrokerRejected:
            return None  # Alpaca refuses a symbol it does not know (400/422)
        snap = snaps.get(symbol)
        return snap.quote if snap is not None else None

    async def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """One snapshots request for all of them; symbols Alpaca does not know are absent."""
        try:
            snaps = await self.get_snapshots(symbols)
        except BrokerRejected:
            return {}  # one unknown symbol refuses the request: none are known then
        return {symbol: snap.quote for symbol, snap in snaps.items()}

    async def get_snapshots(self, symbols: Sequence[str]) -> dict[str, MarketSnapshot]:
        """Snapshots by symbol; symbols Alpaca does not know are absent."""
        if not symbols:
            return {}
        request = StockSnapshotRequest(symbol_or_symbols=list(symbols), feed=self._feed)
        raw = await self._run.read("snapshots", lambda: self._client.get_stock_snapshot(request))
        if not isinstance(raw, dict):
            return {}
        found = {}
        for symbol, item in raw.items():
            snap = snapshot_of(item) if isinstance(item, Snapshot) else None
            if snap is not None:
                found[str(symbol)] = snap
        return found

    async def get_bars(self, symbol: str, size: BarSize, count: int) -> list[Bar]:
        """The port's bars: daily bars as Alpaca gives them; intraday bars built from its minute bars (bars of
        several minutes start on a multiple of their size). A bar Alpaca sends out of order is left out."""
        if count <= 0:
            return []
        if size is BarSize.DAY:
            return [b for b in (_port_bar(p) for p in await self.get_price_bars(symbol, "1Day", count)) if b]
        minutes = int(size.duration.total_seconds()) // 60
        raw = await self.get_price_bars(symbol, "1Min", min(count * minutes, _MAX_BARS))
        return combine_minutes([b for b in (_port_bar(p) for p in raw) if b], minutes)[-count:]

    async def get_price_bars(self, symbol: str, timeframe: Literal["1Day", "1Min"], limit: int) -> list[PriceBar]:
        """The latest `limit` daily or minute bars of `symbol`, oldest first."""
        if not 1 <= limit <= _MAX_BARS:
            raise ValueError(f"limit must be 1..{_MAX_BARS}, got {limit}")
        now = self._clock.now()
        if timeframe == "1Day":
            frame, start = TimeFrame.Day, now - timedelta(days=limit * 7 // 5 + 10)
        else:
            frame, start = TimeFrame.Minute, now - timedelta(days=limit // 390 + 5)
        request = StockBarsRequest(
            symbol_or_symbols=symbol,
            timeframe=frame,
            start=start,
            end=now,
            limit=limit,
            sort=Sort.DESC,
            feed=self._feed,
        )
        raw = await self._run.read("bars", lambda: self._client.get_stock_bars(request))
        data = getattr(raw, "data", {})
        bars = [b for b in (_bar(item) for item in data.get(symbol, [])) if b is not None]
        return sorted(bars, key=lambda b: b.at)[-limit:]

    async def scan_rows(self, symbols: Sequence[str] | None = None) -> list[ScanRow]:
        """Two requests: snapshots of the symbols (the watchlist unless given), and their daily bars of the last
        weeks for the average volume (of the last 20 sessions before today)."""
        wanted = list(self._watchlist if symbols is None else symbols)
        snaps = await self.get_snapshots(wanted)
        if not snaps:
            return []
        daily = await self.get_daily_bars(list(snaps), AVERAGE_DAYS)
        rows = []
        for symbol, snap in snaps.items():
            today = snap.day.at if snap.day is not None else self._clock.now()
            row = scan_row_of(snap, average_volume(daily.get(symbol, []), today))
            if row is not None:
                rows.append(row)
        return rows

    async def get_daily_bars(self, symbols: Sequence[str], sessions: int) -> dict[str, list[PriceBar]]:
        """Each symbol's daily bars of about the last ``sessions`` sessions (and today's), in one request."""
        now = self._clock.now()
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=TimeFrame.Day,
            start=now - timedelta(days=sessions * 7 // 5 + 10),
            end=now,
            feed=self._feed,
        )
        raw = await self._run.read("bars", lambda: self._client.get_stock_bars(request))
        data = getattr(raw, "data", {})
        return {
            str(symbol): [b for b in (_bar(item) for item in items) if b is not None] for symbol, items in data.items()
        }
