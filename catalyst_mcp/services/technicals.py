"""get_technicals: a symbol's indicators from its bars. Daily bars give the trend and momentum indicators
(SMA 10/20/50, EMA 9/21, RSI-14, MACD 12/26/9, ATR-14); five-minute bars give the session's VWAP and the last
bar's relative volume. Bars are kept per symbol and bar size for 30 s, so an agent asking again and again
costs the market data one read."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import MarketData
from catalyst_mcp.services.reading import concurrently
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.indicators import Technicals, technicals

DAILY_BARS: Final = 60  # SMA-50 and MACD's signal line (26 + 9) need fewer
INTRADAY_BARS: Final = 80  # a US session is 78 five-minute bars, an HK session 66
INTRADAY: Final = BarSize.MINUTE_5
REUSE: Final = timedelta(seconds=30)  # the forming bar moves: bars are read again after this
_CACHE_LIMIT: Final = 256


@dataclass(frozen=True, slots=True)
class TechnicalsReading:
    symbol: str
    at: datetime
    known: bool  # False: the market data does not know the symbol (no bars at all)
    daily: Technicals  # the indicators over daily bars
    intraday: Technicals  # over five-minute bars: vwap and relative_volume are taken from here


@dataclass(frozen=True, slots=True)
class TechnicalsService:
    market_data: MarketData
    profile: MarketProfile
    _bars: dict[tuple[str, BarSize, int], tuple[datetime, list[Bar]]] = field(default_factory=dict)

    async def technicals(self, symbol: str, now: datetime) -> TechnicalsReading:
        daily, intraday = await concurrently(
            lambda: self._bars_of(symbol, BarSize.DAY, DAILY_BARS, now),
            lambda: self._bars_of(symbol, INTRADAY, INTRADAY_BARS, now),
        )
        return TechnicalsReading(symbol, now, bool(daily or intraday), technicals(daily), technicals(intraday))

    async def _bars_of(self, symbol: str, size: BarSize, count: int, now: datetime) -> list[Bar]:
        """The bars, in market time; the same bars again for calls within ``REUSE`` of the read."""
        key = (symbol, size, count)
        kept = self._bars.get(key)
        if kept is not None and timedelta(0) <= now - kept[0] < REUSE:
            return kept[1]
        zone = self.profile.timezone
        bars = [replace(b, at=b.at.astimezone(zone)) for b in await self.market_data.get_bars(symbol, size, count)]
        if len(self._bars) >= _CACHE_LIMIT:
            self._bars.clear()
        self._bars[key] = (now, bars)
        return bars
