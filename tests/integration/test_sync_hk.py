"""Hong Kong: one stock code in many spellings (700, 0700, 00700, HK.00700, 0700.HK) is one position, in the
book, at the broker and through the tools; board lots come from the broker or the maintained table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.reconcile.plan import ChangeKind
from catalyst_mcp.server.app import build_server
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.sync import SyncResult

D = Decimal


@pytest.fixture
def hk_settings(database_url: str) -> Settings:
    return Settings(
        database_url=SecretStr(database_url), market="HK", agent_id="hk_agent", sim_seed=7, sim_starting_cash=1_000_000
    )


@pytest.fixture
async def hk(hk_settings: Settings, clock: FixedClock) -> AsyncIterator[Runtime]:
    async with open_runtime(hk_settings, clock=clock) as rt:
        yield rt


def sim(rt: Runtime) -> SimExchange:
    return cast(SimExchange, rt.broker)


async def sync(rt: Runtime, **kw: Any) -> SyncResult:
    return await assemble(rt).sync.sync_positions(dry_run=False, force=False, cycle_id=None, caller=Caller("hk"), **kw)


async def put_book(rt: Runtime, symbol: str, quantity: str, avg: str) -> None:
    async with rt.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
               VALUES ('HK', $1, 'long', $2, $3, now(), now())""",
            symbol,
            D(quantity),
            D(avg),
        )


async def book(rt: Runtime) -> dict[str, Decimal]:
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT symbol, quantity FROM positions WHERE status = 'open'")
    return {r["symbol"]: r["quantity"] for r in rows}


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_a_position_bought_as_0700_hk_is_not_touched_when_the_broker_reports_it_as_hk_00700(
    hk: Runtime, hk_settings: Settings
) -> None:
    async with Client(build_server(hk_settings, runtime=hk)) as client:
        quote = await call(client, "get_quote", symbol="700")
        assert quote["lot_size"] == "100", "the board lot comes with the quote"
        stop = str((D(quote["bid"]) * D("0.99")).quantize(D("0.1")))
        decision = await call(
            client, "check_risk", symbol="0700.HK", side="buy", quantity="100", order_type="market", stop_loss=stop
        )
        assert decision["approved"], decision["reasons"]
        executed = await call(client, "execute_trade", approval_id=decision["approval_id"])
        assert executed["status"] == "filled" and executed["symbol"] == "00700"
        assert await book(hk) == {"00700": D(100)}
        price = D(executed["avg_fill_price"])
        await SimControls(sim(hk)).set_position("00700", D(0), D(0))
        await SimControls(sim(hk)).set_position("HK.00700", D(100), price)

        synced = await call(client, "sync_positions")

        assert synced["changes_made"] is False and synced["phantoms_closed"] == [] == synced["missing_added"]
        assert [p["symbol"] for p in (await call(client, "get_portfolio"))["positions"]] == ["00700"]


async def test_the_old_0670_row_and_the_brokers_670_are_one_position_renamed_not_closed_and_added(
    hk: Runtime,
) -> None:
    await put_book(hk, "0670", "4000", "3.20")
    await SimControls(sim(hk)).set_position("670", D(4000), D("3.20"))

    result = await sync(hk)

    assert result.plan.changes == () and result.changes_made
    assert [f.symbol for f in result.plan.folds] == ["00670"]
    assert await book(hk) == {"00670": D(4000)}
    async with hk.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM positions") == 1  # the same row, renamed
    assert (await sync(hk)).plan.is_empty


async def test_a_broker_reporting_700_and_0700_hk_adds_one_position_of_their_sum(hk: Runtime) -> None:
    await SimControls(sim(hk)).set_position("700", D(100), D("370"))
    await SimControls(sim(hk)).set_position("0700.HK", D(200), D("385"))

    result = await sync(hk)

    assert [(c.kind, c.symbol, c.broker_quantity) for c in result.plan.changes] == [
        (ChangeKind.MISSING, "00700", D(300))
    ]
    assert await book(hk) == {"00700": D(300)}
    async with hk.pool.acquire() as conn:
        assert await conn.fetchval("SELECT avg_entry_price FROM positions") == D(380)
    assert (await sync(hk)).plan.is_empty


async def test_an_odd_lot_is_taken_from_the_broker_and_named_with_its_board_lot(hk: Runtime) -> None:
    await put_book(hk, "00005", "400", "65")
    await SimControls(sim(hk)).set_position("5", D(650), D("65"))

    result = await sync(hk)

    assert await book(hk) == {"00005": D(650)}
    (change,) = result.plan.changes
    assert change.lot_size == 400  # the simulated exchange lists HSBC with a board lot of 400
    assert any("odd lot" in d and "400" in d for d in result.details)
