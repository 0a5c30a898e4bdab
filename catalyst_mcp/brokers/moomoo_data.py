"""Moomoo market data behind the MarketData port, through futu-api's quote context: snapshots (quotes, board
lots and the price spread at the current price), static info to tell unknown codes apart, K lines for bars
and the scanner's average volume, and OpenD's global state for the market's open and close (the lunch break
included) and its clock. Every call runs through the adapter's runner (`moomoo_sdk.SdkCalls`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import anyio

from catalyst_mcp.brokers import moomoo_mapping as wire
from catalyst_mcp.brokers.moomoo_sdk import Link, SdkCalls
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput
from catalyst_mcp.domain.models import Quote
from catalyst_mcp.markets.lots import table_lot
from catalyst_mcp.ports import Clock
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow

log = logging.getLogger("catalyst_mcp.brokers.moomoo")

# Liquid HK large caps scanned by default (OpenD has no "whole market" snapshot).
DEFAULT_UNIVERSE: Final = (
    "00700", "09988", "03690", "01810", "00005", "00388", "02318", "00939", "01299", "00941", "00883", "01211",
    "02020", "09618", "00027", "00001", "00002", "00003", "00016", "00011", "00066", "00175", "01398", "03988",
)  # fmt: skip
AVERAGE_DAYS: Final = 20  # sessions averaged for a symbol's typical daily volume
FRESH: Final = timedelta(seconds=5)  # a snapshot this young still tells the spread an order must be on
_STATE_TTL: Final = timedelta(seconds=1)  # OpenD's market state is read at most this often
_SKEW: Final = timedelta(seconds=2)  # below this, OpenD's clock and ours are taken to agree (it counts seconds)
_MAX_BARS: Final = 1000  # one page of K lines


@dataclass(frozen=True, slots=True)
class MarketState:
    state: str  # futu's MarketState of HK: MORNING, REST (lunch), AFTERNOON, CLOSED, …
    read_at: datetime
    offset: timedelta  # OpenD's clock minus ours


class MoomooMarketData:
    """HK quotes, lots, spreads and bars from OpenD. The latest snapshot of each symbol is kept: the broker
    checks an order's lot and spread against it."""

    source = "moomoo"

    def __init__(self, link: Link, calls: SdkCalls, clock: Clock, universe: Sequence[str] = DEFAULT_UNIVERSE):
        self._link = link
        self._calls = calls
        self._clock = clock
        self._universe = tuple(universe)
        self._lock = threading.Lock()
        self._snapshots: dict[str, tuple[wire.Snapshot, datetime]] = {}
        self._avg_volume: dict[tuple[str, date], Decimal] = {}
        self._state: MarketState | None = None
        self._state_lock = anyio.Lock()

    # --- snapshots ------------------------------------------------------------------------------------

    async def snapshots(self, symbols: Sequence[str]) -> dict[str, wire.Snapshot]:
        """Snapshots by symbol; codes OpenD does not know are absent (one unknown code refuses the whole
        request: static info then says which are known, and those are asked again)."""
        codes = list(dict.fromkeys(c for c in (_code(s) for s in symbols) if c))
        if not codes:
            return {}
        try:
            rows = await self._snapshot_rows(codes)
        except BrokerRejected:
            known = await self.known(codes)
            if not known or len(known) == len(codes):
                return {}
            rows = await self._snapshot_rows(known)
        now = self._clock.now()
        found: dict[str, wire.Snapshot] = {}
        for row in rows:
            snap = wire.snapshot(row, now)
            if snap is not None:
                found[snap.quote.symbol] = snap
        with self._lock:
            for symbol, snap in found.items():
                self._snapshots[symbol] = (snap, now)
        return found

    async def _snapshot_rows(self, codes: list[str]) -> list[wire.Row]:
        return await self._calls.read("snapshots", self._link, lambda ctx: _rows(ctx.get_market_snapshot(codes)))

    async def known(self, codes: list[str]) -> list[str]:
        """The codes OpenD's static info lists (an empty list when it refuses them all)."""
        try:
            rows = await self._calls.read(
                "static info", self._link, lambda ctx: _rows(ctx.get_stock_basicinfo("HK", "STOCK", codes))
            )
        except BrokerRejected:
            return []
        listed = {str(r.get("code")) for r in rows}
        return [c for c in codes if c in listed]

    async def instrument(self, symbol: str, *, fresh: bool) -> wire.Snapshot | None:
        """The latest snapshot of `symbol`: the kept one, unless `fresh` asks for one younger than `FRESH`."""
        symbol = wire.canonical(symbol)
        with self._lock:
            kept = self._snapshots.get(symbol)
        if kept is not None and (not fresh or self._clock.now() - kept[1] <= FRESH):
            return kept[0]
        return (await self.snapshots([symbol])).get(symbol)

    # --- the port -------------------------------------------------------------------------------------

    async def get_quote(self, symbol: str) -> Quote | None:
        code = _code(symbol)
        snap = (await self.snapshots([symbol])).get(code[3:]) if code else None
        return snap.quote if snap is not None else None

    async def get_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        return {symbol: snap.quote for symbol, snap in (await self.snapshots(symbols)).items()}

    async def scan_rows(self, symbols: Sequence[str] | None = None) -> list[ScanRow]:
        """The snapshots of the symbols (the default universe unless given), with each one's average daily
        volume over its last sessions before today (daily K lines, read once a day per symbol)."""
        snaps = await self.snapshots(list(self._universe if symbols is None else symbols))
        rows: list[ScanRow] = []
        for symbol, snap in snaps.items():
            if snap.suspended:
                continue
            rows.append(wire.scan_row(snap, await self._average_volume(symbol, snap)))
        return rows

    async def _average_volume(self, symbol: str, snap: wire.Snapshot) -> Decimal:
        today = self._clock.now().astimezone(wire.HKT).date()
        with self._lock:
            known = self._avg_volume.get((symbol, today))
        if known is not None:
            return known
        try:
            bars = await self.get_bars(symbol, BarSize.DAY, AVERAGE_DAYS + 1)
        except BrokerRejected:
            bars = []
        past = [b.volume for b in bars if b.at.astimezone(wire.HKT).date() < today][-AVERAGE_DAYS:]
        average = sum(past, Decimal(0)) / len(past) if past else snap.volume
        with self._lock:
            self._avg_volume = {k: v for k, v in self._avg_volume.items() if k[1] == today}
            self._avg_volume[(symbol, today)] = average
        return average

    async def get_bars(self, symbol: str, size: BarSize, count: int) -> list[Bar]:
        """The latest `count` bars (one page at most), oldest first; [] for a code OpenD does not know."""
        code = _code(symbol)
        if count <= 0 or code is None:
            return []
        wanted = min(count, _MAX_BARS)
        start, end = wire.history_window(size, wanted, self._clock.now())

        def call(ctx: Any) -> tuple[int, Any]:
            answer = ctx.request_history_kline(code, start=start, end=end, ktype=wire.ktype(size), max_count=wanted)
            return _rows(answer[:2])

        try:
            rows = await self._calls.read("bars", self._link, call)
        except BrokerRejected:
            return []
        bars = [b for b in (wire.bar(r, size) for r in rows) if b is not None]
        return sorted(bars, key=lambda b: b.at)[-count:]

    def lot_size(self, symbol: str) -> Decimal:
        """The board lot from the latest snapshot; the maintained table before any snapshot of the symbol."""
        code = _code(symbol)
        with self._lock:
            kept = self._snapshots.get(code[3:]) if code else None
        if kept is not None:
            return kept[0].lot
        return table_lot(Market.HK, code[3:]) if code else Decimal(100)

    # --- the market's state and OpenD's clock ---------------------------------------------------------

    async def market_state(self) -> MarketState:
        """OpenD's state of the HK market, read at most once a second."""
        known = self._state
        if known is not None and self._clock.now() - known.read_at < _STATE_TTL:
            return known
        async with self._state_lock:
            known = self._state
            if known is not None and self._clock.now() - known.read_at < _STATE_TTL:
                return known
            raw: dict[str, Any] = await self._calls.read("market state", self._link, lambda c: c.get_global_state())
            now = self._clock.now()
            offset = timedelta(0)
            server = wire.dec(raw.get("timestamp"))
            if server is not None:
                offset = datetime.fromtimestamp(float(server), tz=now.tzinfo) - now
                if abs(offset) < _SKEW:
                    offset = timedelta(0)
            known = self._state = MarketState(str(raw.get("market_hk", "N/A")), now, offset)
            return known

    def clock_offset(self) -> timedelta:
        return self._state.offset if self._state is not None else timedelta(0)


def _code(symbol: str) -> str | None:
    try:
        return wire.futu_code(symbol)
    except InvalidInput:
        return None


def _rows(answer: Any) -> tuple[int, Any]:
    """The SDK's ``(ret, DataFrame)`` as ``(ret, rows)`` (converted here, in the worker thread)."""
    ret, data = answer[0], answer[1]
    if ret != 0:
        return ret, data
    if hasattr(data, "to_dict"):
        return ret, data.to_dict("records")
    return ret, list(data or [])
