"""Alpaca market data (quotes, snapshots, bars) through the real SDK against the emulator; the scanner's rows are
in test_alpaca_scan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import anyio
import pytest
from alpaca.data.requests import StockLatestQuoteRequest

from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.signals.bars import BarSize
from tests.fakes.alpaca_harness import Adapter, alpaca_adapter

pytestmark = pytest.mark.anyio


@pytest.fixture
async def alpaca(clock: FixedClock) -> AsyncIterator[Adapter]:
    async with alpaca_adapter(clock) as adapter:
        yield adapter


def data_queries(alpaca: Adapter) -> list[dict[str, str]]:
    return [query for _, path, query, _ in alpaca.emulator.requests if path.startswith("/v2/stocks/")]


async def test_a_quote_is_the_emulators_price_as_exact_decimals(alpaca: Adapter) -> None:
    expected = alpaca.emulator.quote("MSFT")

    quote = await alpaca.data.get_quote("MSFT")

    assert quote is not None
    assert (quote.bid, quote.ask, quote.last) == (expected.bid, expected.ask, expected.last)
    assert quote.bid < quote.ask and quote.at == expected.at
    assert str(quote.bid_size) == str(expected.bid_size)


async def test_an_unknown_symbol_has_no_quote(alpaca: Adapter) -> None:
    assert await alpaca.data.get_quote("ZZZZ") is None


async def test_the_iex_feed_is_asked_for_unless_configured(alpaca: Adapter, clock: FixedClock) -> None:
    await alpaca.data.get_quote("AAPL")
    await alpaca.data.get_price_bars("AAPL", "1Day", 2)
    async with alpaca_adapter(clock, alpaca_feed="sip") as sip:
        await sip.data.get_quote("AAPL")

    assert [q["feed"] for q in data_queries(alpaca)] == ["iex", "iex"]
    assert [q["feed"] for q in data_queries(sip)] == ["sip"]


async def test_snapshots_carry_today_and_the_previous_day(alpaca: Adapter) -> None:
    snaps = await alpaca.data.get_snapshots(["AAPL", "KO", "ZZZZ"])

    assert sorted(snaps) == ["AAPL", "KO"]
    day, previous = snaps["AAPL"].day, snaps["AAPL"].previous_day
    assert day is not None and previous is not None and snaps["AAPL"].minute is not None
    assert day.open == previous.close and day.close == snaps["AAPL"].quote.last
    assert previous.at < day.at and day.volume > 0


async def test_daily_and_minute_bars_come_oldest_first_and_end_now(alpaca: Adapter, clock: FixedClock) -> None:
    daily = await alpaca.data.get_price_bars("NVDA", "1Day", 5)
    minutes = await alpaca.data.get_price_bars("NVDA", "1Min", 45)

    assert len(daily) == 5 and [b.at for b in daily] == sorted(b.at for b in daily)
    assert daily[-1].close == alpaca.emulator.quote("NVDA").last
    assert len(minutes) == 45 and minutes[-1].at <= clock.now() and minutes[0].at < minutes[-1].at
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in daily + minutes)
    assert all(isinstance(b.close, Decimal) for b in daily)


async def test_the_ports_bars_are_alpacas_daily_bars_and_its_minute_bars_combined(alpaca: Adapter) -> None:
    daily = await alpaca.data.get_bars("NVDA", BarSize.DAY, 5)
    raw_daily = await alpaca.data.get_price_bars("NVDA", "1Day", 5)
    assert [(b.at, b.open, b.high, b.low, b.close, b.volume) for b in daily] == [
        (r.at, r.open, r.high, r.low, r.close, r.volume) for r in raw_daily
    ]

    five = await alpaca.data.get_bars("NVDA", BarSize.MINUTE_5, 6)
    minutes = await alpaca.data.get_price_bars("NVDA", "1Min", 200)
    assert len(five) == 6 and all(b.at.minute % 5 == 0 and b.at.second == 0 for b in five)
    assert [b.at for b in five] == sorted(b.at for b in five)
    for bar in five:
        inside = [m for m in minutes if bar.at <= m.at < bar.at + timedelta(minutes=5)]
        assert inside, bar
        assert bar.open == inside[0].open and bar.close == inside[-1].close
        assert bar.high == max(m.high for m in inside) and bar.low == min(m.low for m in inside)
        assert bar.volume == sum(m.volume for m in inside)
    assert await alpaca.data.get_bars("ZZZZ", BarSize.DAY, 5) == []
    assert await alpaca.data.get_bars("NVDA", BarSize.DAY, 0) == []


async def test_the_latest_quotes_endpoint_speaks_alpacas_shape(alpaca: Adapter) -> None:
    client = alpaca.data._client  # the SDK's own call: proves the emulator's JSON parses as Alpaca's
    request = StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "V"])

    quotes = await anyio.to_thread.run_sync(lambda: client.get_stock_latest_quote(request))

    assert isinstance(quotes, dict) and sorted(quotes) == ["AAPL", "V"]
    assert Decimal(str(quotes["V"].ask_price)) == alpaca.emulator.quote("V").ask
