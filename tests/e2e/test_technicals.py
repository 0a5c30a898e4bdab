"""get_technicals through the real client, on the simulated exchange of each market: the indicators are those
of the market data's own bars (read through the port here), null where bars are too few."""

from __future__ import annotations

from decimal import Decimal

import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.signals.bars import BarSize
from catalyst_mcp.signals.indicators import PLACES
from tests.e2e.conftest import Tools

pytestmark = pytest.mark.anyio


async def check_against_the_bars(tools: Tools, runtime: Runtime, symbol: str) -> None:
    out = await tools.ok("get_technicals", {"symbol": symbol})
    daily = await runtime.market_data.get_bars(symbol, BarSize.DAY, 60)
    five = await runtime.market_data.get_bars(symbol, BarSize.MINUTE_5, 80)
    closes = [b.close for b in daily]
    assert out["symbol"] == symbol and out["reason"] is None
    assert Decimal(out["sma_10"]) == (sum(closes[-10:], Decimal(0)) / 10).quantize(PLACES)
    assert Decimal(out["sma_50"]) == (sum(closes[-50:], Decimal(0)) / 50).quantize(PLACES)
    assert 0 <= Decimal(out["rsi_14"]) <= 100 and Decimal(out["atr_14"]) > 0
    macd = out["macd"]
    assert abs(Decimal(macd["line"]) - Decimal(macd["signal"]) - Decimal(macd["histogram"])) <= PLACES
    today = [b for b in five if b.at.astimezone(runtime.profile.timezone).date() == five[-1].at.date()]
    assert min(b.low for b in today) <= Decimal(out["vwap"]) <= max(b.high for b in today)
    assert Decimal(out["last"]) == five[-1].close and Decimal(out["relative_volume"]) >= 0


async def test_us_technicals_are_the_indicators_of_the_market_datas_bars(tools: Tools, runtime: Runtime) -> None:
    await check_against_the_bars(tools, runtime, "AAPL")
    unknown = await tools.ok("get_technicals", {"symbol": "ZZZZ"})
    assert unknown["reason"] == "ZZZZ is not a known symbol in this market"
    assert all(unknown[k] is None for k in ("rsi_14", "sma_10", "macd", "vwap", "relative_volume", "last"))


async def test_hk_technicals_answer_for_a_listed_symbol(database_url: str, clock: FixedClock) -> None:
    from pydantic import SecretStr

    settings = Settings(database_url=SecretStr(database_url), market="HK", agent_id="hk_agent", sim_seed=7)
    async with open_runtime(settings, clock=clock) as runtime, Client(build_server(settings, runtime=runtime)) as c:
        tools = Tools(c)
        await check_against_the_bars(tools, runtime, "00700")
        spelled = await tools.ok("get_technicals", {"symbol": "0700.HK"})
        assert spelled["symbol"] == "00700"
