"""The read-only half of the Alpaca emulator: the clock, calendar and assets, and the market data (snapshots,
latest quotes, daily and minute bars), priced by the simulated exchange's pure model at the emulator's clock
so they agree with the trading half's fills. A test may pin a symbol's price (`set_price`) to move the
market where it needs it, e.g. through a stop."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalyst_mcp.brokers.sim_prices import Instrument, day_stats, quote_at, universe_for
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.models import Quote
from catalyst_mcp.ports import Clock
from tests.fakes import alpaca_payloads as js
from tests.fakes.alpaca_payloads import PROFILE, error


class MarketRoutes:
    """Alpaca's reference and market-data routes over the emulator's universe and clock."""

    def __init__(self, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.seed = seed
        self.universe: dict[str, Instrument] = dict(universe_for(Market.US))
        self.pinned: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # symbol -> (bid, last, ask)

    def quote(self, symbol: str, at: datetime | None = None) -> Quote:
        at = at or self.clock.now()
        if symbol in self.pinned:
            bid, last, ask = self.pinned[symbol]
            return Quote(symbol, bid, ask, last, Decimal(100), Decimal(100), at)
        return quote_at(self.seed, self.universe[symbol], at, PROFILE)

    def set_price(self, symbol: str, price: Decimal, spread: Decimal = Decimal("0.02")) -> Quote:
        """Pin `symbol` at `price` (the last trade) with `spread` around it, on the tick, until released;
        returns the quote (its bid is what a triggered sell stop fills at)."""
        if symbol not in self.universe:
            raise KeyError(symbol)
        bid = PROFILE.round_to_tick(price - spread / 2, ROUND_FLOOR)
        ask = PROFILE.round_to_tick(price + spread / 2, ROUND_CEILING)
        self.pinned[symbol] = (bid, PROFILE.round_to_tick(price), max(ask, bid + PROFILE.tick_for(bid)))
        return self.quote(symbol)

    def release_price(self, symbol: str) -> None:
        """Let `symbol` follow the simulated model again."""
        self.pinned.pop(symbol, None)

    async def clock_route(self, request: Request) -> Response:
        return JSONResponse(js.clock_json(self.clock.now()))

    async def calendar(self, request: Request) -> Response:
        start = date.fromisoformat(request.query_params.get("start", self._today().isoformat()))
        return JSONResponse(js.calendar_json(start, date.fromisoformat(request.query_params.get("end", str(start)))))

    async def assets(self, request: Request) -> Response:
        return JSONResponse([js.asset_json(s, i.name) for s, i in sorted(self.universe.items())])

    async def asset(self, request: Request) -> Response:
        inst = self.universe.get(request.path_params["symbol"])
        return JSONResponse(js.asset_json(inst.symbol, inst.name)) if inst else error(404, 40410000, "asset not found")

    def _today(self) -> date:
        return PROFILE.latest_session(self.clock.now())

    def _symbols(self, request: Request) -> list[str]:
        return [s for s in request.query_params.get("symbols", "").split(",") if s in self.universe]

    def _day_bar(self, symbol: str, day: date) -> dict[str, Any]:
        bounds = PROFILE.session_bounds(day)
        assert bounds is not None
        inst = self.universe[symbol]
        opening = day_stats(self.seed, inst, bounds[0], PROFILE).prev_close
        stats = day_stats(self.seed, inst, min(bounds[1] - timedelta(microseconds=1), self.clock.now()), PROFILE)
        return js.bar_json(
            datetime.combine(day, datetime.min.time(), PROFILE.timezone), opening, stats.last, stats.volume
        )

    def _minute_bar(self, symbol: str, start: datetime) -> dict[str, Any]:
        inst, end = self.universe[symbol], min(start + timedelta(minutes=1), self.clock.now())
        volume = day_stats(self.seed, inst, end, PROFILE).volume - day_stats(self.seed, inst, start, PROFILE).volume
        return js.bar_json(start, self.quote(symbol, start).last, self.quote(symbol, end).last, max(volume, Decimal(0)))

    async def snapshots(self, request: Request) -> Response:
        now, today = self.clock.now(), self._today()
        bounds = PROFILE.session_bounds(today)
        assert bounds is not None
        minute = min(now, bounds[1] - timedelta(minutes=1)).replace(second=0, microsecond=0)
        out = {}
        for s in self._symbols(request):
            q = self.quote(s)
            out[s] = {
                "latestTrade": js.trade_json(q),
                "latestQuote": js.quote_json(q),
                "minuteBar": self._minute_bar(s, minute),
                "dailyBar": self._day_bar(s, today),
                "prevDailyBar": self._day_bar(s, PROFILE.previous_session(today)),
            }
        return JSONResponse(out)

    async def latest_quotes(self, request: Request) -> Response:
        return JSONResponse({"quotes": {s: js.quote_json(self.quote(s)) for s in self._symbols(request)}})

    async def bars(self, request: Request) -> Response:
        q, now = request.query_params, self.clock.now()
        start = datetime.fromisoformat(q["start"]) if "start" in q else now - timedelta(days=1)
        end = min(datetime.fromisoformat(q["end"]) if "end" in q else now, now)
        limit, daily = min(int(q.get("limit") or 1000), 10_000), q.get("timeframe") == "1Day"
        out: dict[str, list[dict[str, Any]]] = {}
        for symbol in self._symbols(request):
            bars: list[dict[str, Any]] = []  # newest first
            day = PROFILE.latest_session(end)
            while len(bars) < limit and (bounds := PROFILE.session_bounds(day)) and bounds[1] > start:
                if daily:
                    bars.append(self._day_bar(symbol, day))
                minute = min(end, bounds[1] - timedelta(minutes=1)).replace(second=0, microsecond=0)
                while not daily and len(bars) < limit and minute >= max(bounds[0], start):
                    bars.append(self._minute_bar(symbol, minute))
                    minute -= timedelta(minutes=1)
                day = PROFILE.previous_session(day)
            out[symbol] = bars if q.get("sort") == "desc" else bars[::-1]
        return JSONResponse({"bars": out, "next_page_token": None})
