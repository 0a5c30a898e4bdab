"""scan_market through the real MCP client on the simulated exchange of each market: with nothing moving the
scan relaxes to its loosest tier; as symbols are moved (pinned prices) it tightens to the strictest tier that
finds anything and says which; with everything falling no tier finds anything. Every scan is stored with its
cycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.sim_prices import universe_for
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.signals.scanner import default_criteria
from catalyst_mcp.store import scans
from tests.e2e.conftest import Tools

pytestmark = pytest.mark.anyio

MARKETS = [Market.US, Market.HK]


Serving = tuple[Tools, Runtime, SimControls]


@asynccontextmanager
async def serving(database_url: str, clock: FixedClock, market: Market, **extra: Any) -> AsyncIterator[Serving]:
    """A server of `market` on the simulated exchange (seed 7) through the real client, and the exchange's
    controls."""
    agent = f"{market.value.lower()}_agent"
    settings = Settings(database_url=SecretStr(database_url), market=market, agent_id=agent, sim_seed=7, **extra)
    async with open_runtime(settings, clock=clock) as runtime, Client(build_server(settings, runtime=runtime)) as c:
        assert isinstance(runtime.broker, SimExchange)
        yield Tools(c), runtime, SimControls(runtime.broker)


def symbols(scan: dict[str, Any]) -> list[str]:
    return [c["symbol"] for c in scan["candidates"]]


@pytest.mark.parametrize("market", MARKETS, ids=[m.value for m in MARKETS])
async def test_the_scan_uses_the_strictest_tier_that_finds_anything_and_says_which(
    database_url: str, clock: FixedClock, market: Market
) -> None:
    tiers = default_criteria(market).tiers
    async with serving(database_url, clock, market) as (tools, runtime, controls):
        cycle_id = await tools.start_cycle(mode="scan")

        # minutes into the session nothing has moved much: only the loosest tier (any riser) finds anything
        calm = await tools.ok("scan_market", {"cycle_id": cycle_id, "limit": 50})
        assert (calm["tier"], calm["tier_level"], calm["tier_count"]) == ("any", 4, 4)
        assert calm["source"] == "simulated" and calm["considered"] == len(universe_for(market))
        assert calm["candidates"] and all(Decimal(c["change_pct"]) >= 0 for c in calm["candidates"])
        assert calm["summary"].startswith("tier 4 of 4 (any: change ≥ 0 %)")

        # the three busiest symbols, each moved just past one tier's change threshold
        busiest = sorted(calm["candidates"], key=lambda c: (-Decimal(c["relative_volume"]), c["symbol"]))[:3]
        strong, moderate, mild = (c["symbol"] for c in busiest)
        assert Decimal(busiest[0]["relative_volume"]) >= 2 and Decimal(busiest[2]["relative_volume"]) >= 1
        for level, symbol in ((3, mild), (2, moderate), (1, strong)):
            tier = tiers[level - 1]
            assert tier.min_change_pct is not None
            await controls.move_price(symbol, tier.min_change_pct + Decimal("0.5"))

            scan = await tools.ok("scan_market", {"cycle_id": cycle_id})
            assert (scan["tier"], scan["tier_level"]) == (tier.name, level), scan["summary"]
            assert symbols(scan) == [symbol] and scan["qualified"] == 1
            assert Decimal(scan["candidates"][0]["change_pct"]) >= tier.min_change_pct

        status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
        [scan_phase] = [p for p in status["cycles"][0]["phases"] if p["name"] == "SCAN"]
        assert scan_phase["status"] == "completed" and scan_phase["detail"].startswith("tier 1 of 4 (strong")

        stored = await runtime.pool.fetch(
            "SELECT market, tier, tier_level, candidates FROM scans WHERE cycle_id = $1 ORDER BY scan_id", cycle_id
        )
        assert [(r["market"], r["tier"], r["tier_level"]) for r in stored] == [
            (market.value, "any", 4),
            (market.value, "mild", 3),
            (market.value, "moderate", 2),
            (market.value, "strong", 1),
        ]
        assert stored[0]["candidates"] == calm["candidates"]
        assert [c["symbol"] for c in stored[-1]["candidates"]] == [strong]


@pytest.mark.parametrize("market", MARKETS, ids=[m.value for m in MARKETS])
async def test_when_every_symbol_falls_no_tier_finds_anything_and_the_scan_says_so(
    database_url: str, clock: FixedClock, market: Market
) -> None:
    universe = ("AAPL", "MSFT") if market is Market.US else ("700", "0005.HK")
    async with serving(database_url, clock, market, scanner={"universe": universe}) as (tools, runtime, controls):
        for symbol in ("AAPL", "MSFT") if market is Market.US else ("00700", "00005"):
            await controls.move_price(symbol, Decimal(-2))

        scan = await tools.ok("scan_market", {"limit": 5})

        assert scan["tier"] is None and scan["tier_level"] is None and scan["candidates"] == []
        assert (scan["considered"], scan["passed_filters"], scan["qualified"]) == (2, 2, 0)
        assert scan["summary"] == (
            "no tier found anything: 2 of 2 symbols passed the filters, none met the loosest of the 4 tiers"
        )
        row = await runtime.pool.fetchrow("SELECT cycle_id, tier, considered, candidates FROM scans")
        assert row is not None and (row["cycle_id"], row["tier"], row["considered"], row["candidates"]) == (
            None,
            None,
            2,
            [],
        )


async def test_settings_override_the_markets_tiers_and_filters(database_url: str, clock: FixedClock) -> None:
    scanner = {"tiers": [{"name": "everything"}], "max_price": "100"}
    async with serving(database_url, clock, Market.US, scanner=scanner) as (tools, _, _):
        scan = await tools.ok("scan_market", {"limit": 50})

        assert (scan["tier"], scan["tier_level"], scan["tier_count"]) == ("everything", 1, 1)
        assert scan["candidates"] and all(Decimal(c["price"]) <= 100 for c in scan["candidates"])
        assert scan["qualified"] == scan["passed_filters"] < scan["considered"] == len(universe_for(Market.US))


async def test_each_scan_is_stored_with_its_cycle_and_refused_input_stores_none(
    database_url: str, clock: FixedClock
) -> None:
    async with serving(database_url, clock, Market.HK) as (tools, runtime, _):
        cycle_id = await tools.start_cycle()
        in_cycle = await tools.ok("scan_market", {"cycle_id": cycle_id, "limit": 3})
        outside = await tools.ok("scan_market", {})
        for bad in ({"limit": 0}, {"limit": 51}, {"limit": "many"}, {"cycle_id": "us_20261125_100000_abcdef"}):
            await tools.error("scan_market", bad)

        async with runtime.pool.acquire() as conn:
            [of_cycle] = await scans.of_cycle(conn, cycle_id)
            latest = await scans.recent(conn, Market.HK)
        assert [s.scan_id for s in latest] == [outside["scan_id"], in_cycle["scan_id"]]
        assert of_cycle.scan_id == in_cycle["scan_id"] and latest[0].cycle_id is None
        assert of_cycle.market is Market.HK and of_cycle.source == "simulated"
        assert (of_cycle.tier, of_cycle.tier_level, of_cycle.tier_count) == (
            in_cycle["tier"],
            in_cycle["tier_level"],
            in_cycle["tier_count"],
        )
        assert (of_cycle.considered, of_cycle.passed_filters, of_cycle.qualified) == (
            in_cycle["considered"],
            in_cycle["passed_filters"],
            in_cycle["qualified"],
        )
        assert list(of_cycle.candidates) == in_cycle["candidates"] and len(in_cycle["candidates"]) == 3
        assert of_cycle.at.isoformat() == in_cycle["at"]
