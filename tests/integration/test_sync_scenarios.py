"""sync_positions against the simulated exchange: every kind of discrepancy, and the guards."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from catalyst_mcp.bootstrap import Runtime, assemble
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.domain.enums import CycleMode, Market, PositionSide
from catalyst_mcp.reconcile.diff import PHANTOM_REASON, SIDE_REASON, diff
from catalyst_mcp.reconcile.plan import ChangeKind
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.sync import SyncResult
from catalyst_mcp.store import book as book_store
from catalyst_mcp.store.book import BookChanged

D = Decimal
CALLER = Caller("sync-test")
TABLES = ("positions", "orders", "fills", "sync_runs", "audit_events", "cycles", "sim.positions", "sim.orders")


def sim(rt: Runtime) -> SimExchange:
    return cast(SimExchange, rt.broker)


async def sync(rt: Runtime, *, dry_run: bool = False, force: bool = False, cycle_id: str | None = None) -> SyncResult:
    return await assemble(rt).sync.sync_positions(dry_run=dry_run, force=force, cycle_id=cycle_id, caller=CALLER)


async def put_book(rt: Runtime, symbol: str, signed: str, avg: str = "100") -> int:
    """A position as an earlier run left it in the book (no fill behind it)."""
    q = D(signed)
    async with rt.pool.acquire() as conn:
        value = await conn.fetchval(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING position_id""",
            rt.profile.market.value,
            symbol,
            "long" if q > 0 else "short",
            abs(q),
            D(avg),
        )
    return int(value)


async def rows(rt: Runtime, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with rt.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def book(rt: Runtime) -> dict[str, tuple[str, Decimal, Decimal]]:
    found = await rows(rt, "SELECT symbol, side, quantity, avg_entry_price FROM positions WHERE status = 'open'")
    return {r["symbol"]: (r["side"], r["quantity"], r["avg_entry_price"]) for r in found}


async def counts(rt: Runtime) -> dict[str, int]:
    async with rt.pool.acquire() as conn:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


async def test_a_phantom_is_closed_with_a_reason_and_no_invented_pnl(runtime: Runtime) -> None:
    pid = await put_book(runtime, "AAPL", "60", avg="190")
    await put_book(runtime, "KO", "5")  # still held: closing one position of two is not an outage
    await SimControls(sim(runtime)).set_position("KO", D(5), D(100))

    result = await sync(runtime)

    assert [c.symbol for c in result.plan.changes] == ["AAPL"] and result.changes_made
    (closed,) = await rows(runtime, "SELECT * FROM positions WHERE position_id = $1", pid)
    assert closed["status"] == "closed" and closed["close_reason"] == PHANTOM_REASON
    assert closed["realized_pnl"] is None and closed["closed_at"] is not None
    assert "without a P&L" in result.details[0]


async def test_a_missing_position_is_added_at_the_brokers_price(runtime: Runtime) -> None:
    await SimControls(sim(runtime)).set_position("MSFT", D(5), D("401.25"))
    result = await sync(runtime)
    assert await book(runtime) == {"MSFT": ("long", D(5), D("401.25"))}
    assert result.plan.changes[0].kind == "missing"


async def test_a_quantity_mismatch_takes_the_brokers_quantity_and_price_on_the_same_row(runtime: Runtime) -> None:
    pid = await put_book(runtime, "KO", "60", avg="62")
    await SimControls(sim(runtime)).set_position("KO", D(34), D("61.5"))

    await sync(runtime)

    assert await book(runtime) == {"KO": ("long", D(34), D("61.5"))}
    assert [r["position_id"] for r in await rows(runtime, "SELECT position_id FROM positions")] == [pid]


async def test_a_side_mismatch_closes_the_long_and_opens_the_brokers_short(runtime: Runtime) -> None:
    pid = await put_book(runtime, "TSLA", "10", avg="250")
    await SimControls(sim(runtime)).set_position("TSLA", D(-10), D("251"))

    result = await sync(runtime)

    assert [c.kind for c in result.plan.changes] == ["side"]
    assert await book(runtime) == {"TSLA": ("short", D(10), D("251"))}
    (old,) = await rows(runtime, "SELECT * FROM positions WHERE position_id = $1", pid)
    assert old["status"] == "closed" and old["close_reason"] == SIDE_REASON and old["realized_pnl"] is None


async def test_an_average_price_drift_beyond_the_tolerance_is_corrected_and_within_it_is_not(
    runtime: Runtime,
) -> None:
    await put_book(runtime, "JPM", "4", avg="200")
    await put_book(runtime, "KO", "30", avg="62.00")
    await SimControls(sim(runtime)).set_position("JPM", D(4), D("201"))  # 50 bp apart
    await SimControls(sim(runtime)).set_position("KO", D(30), D("62.0001"))  # well within 1 bp

    result = await sync(runtime)

    assert [(c.kind, c.symbol) for c in result.plan.changes] == [("price", "JPM")]
    assert (await book(runtime))["JPM"] == ("long", D(4), D("201"))
    assert (await book(runtime))["KO"] == ("long", D(30), D("62.00"))


async def test_fractional_positions_are_taken_exactly_and_a_second_sync_is_a_no_op(runtime: Runtime) -> None:
    await put_book(runtime, "NVDA", "0.5", avg="120")
    await SimControls(sim(runtime)).set_position("NVDA", D("0.4999"), D("120"))
    await SimControls(sim(runtime)).set_position("AMZN", D("0.125"), D("185"))

    await sync(runtime)
    again = await sync(runtime)

    assert await book(runtime) == {"NVDA": ("long", D("0.4999"), D(120)), "AMZN": ("long", D("0.125"), D(185))}
    assert not again.changes_made and again.plan.is_empty


async def test_two_book_rows_under_two_spellings_are_folded_into_one_and_reported(runtime: Runtime) -> None:
    keep = await put_book(runtime, "BRK.B", "3", avg="420")
    other = await put_book(runtime, "BRK-B", "2", avg="425")
    await SimControls(sim(runtime)).set_position("BRK.B", D(5), D("422"))

    result = await sync(runtime)

    assert result.plan.changes == () and result.changes_made
    assert [f.symbol for f in result.plan.folds] == ["BRK.B"]
    assert await book(runtime) == {"BRK.B": ("long", D(5), D(422))}
    (closed,) = await rows(runtime, "SELECT position_id, close_reason FROM positions WHERE status = 'closed'")
    assert closed["position_id"] == other and "duplicate" in closed["close_reason"]
    assert (await rows(runtime, "SELECT position_id FROM positions WHERE status = 'open'"))[0]["position_id"] == keep


async def test_a_broker_reporting_one_symbol_under_two_spellings_counts_it_once(runtime: Runtime) -> None:
    await SimControls(sim(runtime)).set_position("BRK.B", D(3), D("420"))
    await SimControls(sim(runtime)).set_position("BRK/B", D(2), D("420"))
    result = await sync(runtime)
    assert await book(runtime) == {"BRK.B": ("long", D(5), D(420))}
    assert any("BRK.B, BRK/B" in d for d in result.details)


async def test_each_change_has_its_audit_row_and_the_run_its_sync_runs_row_linked_to_the_cycle(
    runtime: Runtime,
) -> None:
    started = await assemble(runtime).cycles.start_cycle(
        agent_id="sync_agent", market=None, mode=CycleMode.TRADE, force=True, caller=CALLER
    )
    assert started.cycle_id is not None
    await put_book(runtime, "AAPL", "10")
    await put_book(runtime, "KO", "20")
    await SimControls(sim(runtime)).set_position("KO", D(15), D(60))
    await SimControls(sim(runtime)).set_position("MSFT", D(3), D(400))

    result = await sync(runtime, cycle_id=started.cycle_id)

    (run,) = await rows(runtime, "SELECT * FROM sync_runs WHERE sync_id = $1", result.sync_id)
    assert run["cycle_id"] == started.cycle_id and run["applied"] and run["refused"] is None
    assert [(p["kind"], p["symbol"]) for p in run["plan"]] == [
        ("phantom", "AAPL"),
        ("quantity", "KO"),
        ("missing", "MSFT"),
    ]
    audit = await rows(
        runtime,
        "SELECT outcome, cycle_id FROM audit_events WHERE outcome LIKE $1 ORDER BY audit_id",
        f"sync {result.sync_id}:%",
    )
    assert len(audit) == 4  # three changes and the run
    assert all(a["cycle_id"] == started.cycle_id for a in audit)
    assert [a["outcome"].split(": ")[1] for a in audit[:3]] == ["AAPL", "KO", "MSFT"]


async def test_a_dry_run_writes_nothing_but_its_sync_runs_row(runtime: Runtime) -> None:
    await put_book(runtime, "AAPL", "10")
    await SimControls(sim(runtime)).set_position("MSFT", D(3), D(400))
    before, book_before = await counts(runtime), await book(runtime)

    preview = await sync(runtime, dry_run=True)

    assert {c.symbol for c in preview.plan.changes} == {"AAPL", "MSFT"}
    assert not preview.changes_made and preview.dry_run
    assert all("would be" in d for d in preview.details)
    assert await counts(runtime) == {**before, "sync_runs": before["sync_runs"] + 1}
    assert await book(runtime) == book_before


async def test_a_failed_broker_call_aborts_the_sync_and_changes_nothing(runtime: Runtime) -> None:
    await put_book(runtime, "AAPL", "10")
    await put_book(runtime, "KO", "5")
    await SimControls(sim(runtime)).set_position("KO", D(5), D(100))
    await SimControls(sim(runtime)).set_position("MSFT", D(3), D(400))
    await SimControls(sim(runtime)).fault("get_positions", "error", times=1)
    book_before = await book(runtime)

    failed = await sync(runtime)

    assert failed.refused is not None and "could not be read" in failed.refused and not failed.applied
    assert await book(runtime) == book_before
    (run,) = await rows(runtime, "SELECT applied, refused, plan FROM sync_runs WHERE sync_id = $1", failed.sync_id)
    assert not run["applied"] and run["refused"] == failed.refused and run["plan"] == []
    # The fault was for one call: the next sync reads the broker and applies.
    assert (await sync(runtime)).changes_made


async def test_a_broker_answering_with_no_positions_is_refused_as_an_outage_unless_forced(runtime: Runtime) -> None:
    for symbol in ("AAPL", "JPM", "KO", "MSFT"):
        await put_book(runtime, symbol, "5")
        await SimControls(sim(runtime)).set_position(symbol, D(5), D(100))
    await SimControls(sim(runtime)).fault("get_positions", "empty")
    book_before = await book(runtime)

    refused = await sync(runtime)
    assert refused.refused is not None and "outage" in refused.refused
    assert not refused.changes_made and await book(runtime) == book_before
    assert len(refused.plan.of(ChangeKind.PHANTOM)) == 4  # the plan is kept for the details

    forced = await sync(runtime, force=True)
    assert forced.refused is None and forced.changes_made and await book(runtime) == {}
    await SimControls(sim(runtime)).clear_faults()
    restored = await sync(runtime)
    assert len(restored.plan.changes) == 4 and len(await book(runtime)) == 4


async def test_closing_every_position_of_a_book_of_two_is_an_outage_unless_forced(runtime: Runtime) -> None:
    await put_book(runtime, "AAPL", "5")
    await put_book(runtime, "KO", "5")
    refused = await sync(runtime)
    assert refused.refused is not None and "probable outage" in refused.refused
    assert set(await book(runtime)) == {"AAPL", "KO"}
    forced = await sync(runtime, force=True)
    assert forced.refused is None and await book(runtime) == {}


async def test_a_plan_over_a_row_that_changed_meanwhile_is_not_applied_at_all(runtime: Runtime) -> None:
    await put_book(runtime, "AAPL", "10")
    await put_book(runtime, "KO", "10")
    async with runtime.pool.acquire() as conn:
        plan = diff(await book_store.open_positions(conn, Market.US), [], market=Market.US)
        await conn.execute("UPDATE positions SET quantity = 11 WHERE symbol = 'KO'")
        try:
            async with conn.transaction():
                await book_store.apply_plan(conn, Market.US, plan, runtime.clock.now())
            raise AssertionError("the plan was applied over a changed row")
        except BookChanged as exc:
            assert "run it again" in str(exc)
    assert set(await book(runtime)) == {"AAPL", "KO"}


async def test_short_positions_at_the_broker_are_held_as_a_side_and_a_positive_quantity(runtime: Runtime) -> None:
    await SimControls(sim(runtime)).set_position("INTC", D(-100), D(30))
    await sync(runtime)
    (row,) = await rows(runtime, "SELECT side, quantity FROM positions WHERE status = 'open'")
    assert (row["side"], row["quantity"]) == (PositionSide.SHORT.value, D(100))
