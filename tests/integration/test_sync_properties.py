"""Properties on the real database and the simulated exchange: after an applied sync the book equals the
broker's snapshot, in both markets and whatever the spellings, and a second sync is a no-op."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.markets.symbols import canonical_symbol
from catalyst_mcp.services.audit import Caller

D = Decimal
SPELLINGS = {
    Market.US: {"AAPL": ["AAPL", "aapl"], "BRK.B": ["BRK.B", "BRK-B"], "KO": ["KO"], "TSLA": ["TSLA"], "F": ["F"]},
    Market.HK: {
        "00700": ["00700", "700", "0700.HK", "HK.00700"],
        "00005": ["00005", "5"],
        "00670": ["00670", "0670", "670"],
        "09988": ["09988"],
    },
}
CALLER = Caller("property")

quantities = st.decimals(min_value=D("-5000"), max_value=D("5000"), places=3).filter(lambda q: q != 0)
prices = st.decimals(min_value=D("0.5"), max_value=D("900"), places=4)
Case = tuple[list[tuple[str, Decimal, Decimal]], list[tuple[str, Decimal, Decimal]]]


@st.composite
def cases(draw: st.DrawFn, market: Market) -> Case:
    """Book rows and broker rows as (symbol as written, signed quantity, average price)."""
    names = [n for spellings in SPELLINGS[market].values() for n in spellings]
    book = [(n, draw(quantities), draw(prices)) for n in draw(st.lists(st.sampled_from(names), unique=True))]
    broker = [(n, draw(quantities), draw(prices)) for n in draw(st.lists(st.sampled_from(names), unique=True))]
    return book, broker


async def reset(rt: Runtime, case: Case) -> None:
    book, broker = case
    market = rt.profile.market.value
    async with rt.pool.acquire() as conn:
        await conn.execute("TRUNCATE positions, sim.positions, sync_runs, audit_events RESTART IDENTITY")
        await conn.execute(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
               SELECT $1, s, CASE WHEN q > 0 THEN 'long' ELSE 'short' END, abs(q), a, now(), now()
               FROM unnest($2::text[], $3::numeric[], $4::numeric[]) AS b(s, q, a)""",
            market,
            [s for s, _, _ in book],
            [q for _, q, _ in book],
            [a for _, _, a in book],
        )
        await conn.execute(
            """INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price)
               SELECT $1, s, q, a FROM unnest($2::text[], $3::numeric[], $4::numeric[]) AS b(s, q, a)""",
            market,
            [s for s, _, _ in broker],
            [q for _, q, _ in broker],
            [a for _, _, a in broker],
        )


async def check(rt: Runtime, case: Case) -> None:
    market = rt.profile.market
    await reset(rt, case)
    snapshot = await rt.broker.get_positions()

    applied = await assemble(rt).sync.sync_positions(dry_run=False, force=True, cycle_id=None, caller=CALLER)

    assert applied.refused is None
    expected: dict[str, Decimal] = {}
    for p in snapshot:
        code = canonical_symbol(market, p.symbol)
        assert code is not None
        expected[code] = expected.get(code, D(0)) + p.quantity
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT symbol, side, quantity FROM positions WHERE status = 'open'")
    held = {r["symbol"]: r["quantity"] if r["side"] == "long" else -r["quantity"] for r in rows}
    assert len(held) == len(rows)  # one row per symbol, stored canonically
    assert held == {s: q for s, q in expected.items() if q != 0}

    again = await assemble(rt).sync.sync_positions(dry_run=False, force=False, cycle_id=None, caller=CALLER)
    assert again.refused is None and again.plan.is_empty and not again.changes_made


@pytest.fixture
async def hk_runtime(database_url: str, clock: FixedClock) -> AsyncIterator[Runtime]:
    hk = Settings(database_url=SecretStr(database_url), market="HK", agent_id="hk_agent", sim_seed=7)
    async with open_runtime(hk, clock=clock) as rt:
        yield rt


PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.anyio
@PROPERTY
@given(case=cases(Market.US))
async def test_after_a_sync_the_us_book_equals_the_broker_and_a_second_sync_changes_nothing(
    runtime: Runtime, case: Case
) -> None:
    await check(runtime, case)


@pytest.mark.anyio
@PROPERTY
@given(case=cases(Market.HK))
async def test_after_a_sync_the_hk_book_equals_the_broker_whatever_the_spellings(
    hk_runtime: Runtime, case: Case
) -> None:
    await check(hk_runtime, case)
