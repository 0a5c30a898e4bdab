"""The scanner on Alpaca through the real SDK against the emulator: the watchlist's rows from two requests
(snapshots, and daily bars for the average volume), and scan_market's tiers through an MCP server on Alpaca."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from mcp import Client

from catalyst_mcp.brokers.alpaca_data import DEFAULT_WATCHLIST
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.signals.scanner import default_criteria
from tests.e2e.conftest import Tools
from tests.fakes.alpaca_harness import Adapter, alpaca_adapter, alpaca_runtime

pytestmark = pytest.mark.anyio


@pytest.fixture
async def alpaca(clock: FixedClock) -> AsyncIterator[Adapter]:
    async with alpaca_adapter(clock) as adapter:
        yield adapter


def data_paths(alpaca: Adapter) -> list[str]:
    return [path for _, path, _, _ in alpaca.emulator.requests if path.startswith("/v2/stocks/")]


async def test_the_watchlists_rows_come_from_a_snapshot_and_the_daily_bars_in_two_requests(alpaca: Adapter) -> None:
    before = len(data_paths(alpaca))

    rows = {r.symbol: r for r in await alpaca.data.scan_rows()}

    assert sorted(rows) == sorted(DEFAULT_WATCHLIST)
    assert len(data_paths(alpaca)) - before == 2
    snaps = await alpaca.data.get_snapshots(["NVDA"])
    snap, row = snaps["NVDA"], rows["NVDA"]
    assert snap.day is not None and snap.previous_day is not None
    assert (row.last, row.bid, row.ask) == (snap.quote.last, snap.quote.bid, snap.quote.ask)
    assert (row.prev_close, row.open, row.volume) == (snap.previous_day.close, snap.day.open, snap.day.volume)
    # the average of the 20 sessions before today
    daily = await alpaca.data.get_price_bars("NVDA", "1Day", 21)
    assert daily[-1].at == snap.day.at
    assert row.avg_volume == sum((b.volume for b in daily[:-1]), Decimal(0)) / 20


async def test_only_the_symbols_asked_for_are_scanned_and_unknown_ones_are_absent(alpaca: Adapter) -> None:
    rows = await alpaca.data.scan_rows(["KO", "ZZZZ", "AAPL"])
    assert sorted(r.symbol for r in rows) == ["AAPL", "KO"]
    assert await alpaca.data.scan_rows([]) == []


async def test_scan_market_on_alpaca_tightens_its_tier_as_a_busy_symbol_jumps(
    database_url: str, clock: FixedClock
) -> None:
    strong = default_criteria(Market.US).tiers[0]
    async with (
        alpaca_runtime(database_url, clock) as (emulator, runtime),
        Client(build_server(runtime.settings, runtime=runtime)) as client,
    ):
        tools = Tools(client)
        calm = await tools.ok("scan_market", {"limit": 50})
        assert calm["source"] == "alpaca-iex" and calm["considered"] == len(DEFAULT_WATCHLIST)
        assert calm["tier"] != strong.name and calm["candidates"]
        top = calm["candidates"][0]
        assert Decimal(top["price"]) == emulator.quote(top["symbol"]).last

        rows = await runtime.market_data.scan_rows()
        busiest = max(rows, key=lambda r: (r.volume / r.avg_volume, r.symbol))
        assert strong.min_change_pct is not None
        emulator.set_price(busiest.symbol, busiest.prev_close * (1 + (strong.min_change_pct + 1) / 100))

        jumped = await tools.ok("scan_market", {"limit": 50})

        assert (jumped["tier"], jumped["tier_level"]) == (strong.name, 1), jumped["summary"]
        assert [c["symbol"] for c in jumped["candidates"]] == [busiest.symbol]
        stored = await runtime.pool.fetch("SELECT source, tier FROM scans ORDER BY scan_id")
        assert [(r["source"], r["tier"]) for r in stored] == [
            ("alpaca-iex", calm["tier"]),
            ("alpaca-iex", "strong"),
        ]
