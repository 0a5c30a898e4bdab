"""The safety invariants (DESIGN.md section 5) and the two channels for "no", through the real MCP client."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import anyio
import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import FixedClock

if TYPE_CHECKING:
    from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

UNKNOWN_CYCLE = "us_20261125_100000_abcdef"  # well-formed, never started
# Approved orders, ours and at the broker: the protective legs each entry goes with are counted apart.
ENTRIES = "SELECT count(*) FROM orders WHERE role IN ('entry', 'exit')"
SENT_ENTRIES = "SELECT count(*) FROM sim.orders WHERE parent_id IS NULL"


async def approval_unused(book: Book, approval_id: str) -> bool:
    used = await book.value("SELECT used_at FROM risk_decisions WHERE approval_id = $1", uuid.UUID(approval_id))
    return used is None


# --- execute_trade needs an unexpired, unused approval of its own cycle (invariant 1) -------------------


async def test_execute_trade_without_an_approval_is_a_tool_error_and_sends_nothing(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    before = await book.counts()
    never_issued = str(uuid.uuid4())

    text = await tools.error("execute_trade", {"approval_id": never_issued, "cycle_id": cycle_id})

    assert never_issued in text and "check_risk" in text
    assert await book.counts() == before


async def test_a_malformed_approval_id_is_a_tool_error_naming_the_argument(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    before = await book.counts()
    for malformed in ["abc", "", str(uuid.uuid1()), "12345678-1234-1234-1234-1234567890zz", "x" * 65]:
        text = await tools.error("execute_trade", {"approval_id": malformed, "cycle_id": cycle_id})
        assert "approval_id" in text, f"{malformed!r}: {text}"
    assert await book.counts() == before


async def test_an_approval_from_another_agents_cycle_cannot_be_executed(tools: Tools, book: Book) -> None:
    alpha = await tools.start_cycle(agent_id="alpha")
    beta = await tools.start_cycle(agent_id="beta")
    decision = await tools.approve(alpha)
    before = await book.counts()

    text = await tools.error("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": beta})

    assert alpha in text and beta in text
    assert await book.counts() == before
    assert await approval_unused(book, decision["approval_id"])
    # The approval is still good in its own cycle: the refusal consumed nothing.
    executed = await tools.ok("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": alpha})
    assert executed["status"] == "filled"


async def test_an_approval_from_a_completed_cycle_cannot_be_executed_in_the_next_one(tools: Tools, book: Book) -> None:
    first = await tools.start_cycle()
    decision = await tools.approve(first)
    await tools.ok("complete_cycle", {"cycle_id": first})
    second = await tools.start_cycle()
    before = await book.counts()

    text = await tools.error("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": second})

    assert first in text
    assert await book.counts() == before
    # Nor in the completed cycle itself.
    text = await tools.error("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": first})
    assert first in text and "completed" in text
    assert await book.counts() == before


async def test_an_expired_approval_is_a_tool_error_and_sends_nothing(
    tools: Tools, book: Book, clock: FixedClock
) -> None:
    cycle_id = await tools.start_cycle()
    fresh = await tools.approve(cycle_id, "AAPL", "1")
    stale = await tools.approve(cycle_id, "MSFT", "1")

    clock.advance(timedelta(seconds=59))
    executed = await tools.ok("execute_trade", {"approval_id": fresh["approval_id"], "cycle_id": cycle_id})
    assert executed["status"] == "filled", "59 s after check_risk the approval is still valid"

    clock.advance(timedelta(seconds=2))
    before = await book.counts()
    text = await tools.error("execute_trade", {"approval_id": stale["approval_id"], "cycle_id": cycle_id})

    assert "expired" in text and "check_risk" in text
    assert await book.counts() == before
    assert await approval_unused(book, stale["approval_id"])
    assert await book.open_positions() == {"AAPL": Decimal(1)}


async def test_execute_trade_takes_no_order_fields(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    decision = await tools.approve(cycle_id, "AAPL", "2")
    before = await book.counts()

    text = await tools.error(
        "execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id, "quantity": 500}
    )

    assert "quantity" in text
    assert await book.counts() == before
    assert await approval_unused(book, decision["approval_id"])


async def test_the_order_sent_to_the_broker_is_exactly_the_approved_intent(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    quote = await tools.ok("get_quote", {"symbol": "NVDA"})
    limit = str((Decimal(quote["ask"]) * Decimal("1.01")).quantize(Decimal("0.01")))
    stop = str((Decimal(quote["bid"]) * Decimal("0.95")).quantize(Decimal("0.01")))
    target = str((Decimal(quote["ask"]) * Decimal("1.2")).quantize(Decimal("0.01")))
    decision = await tools.ok(
        "check_risk",
        {
            "symbol": "NVDA",
            "side": "buy",
            "quantity": "7",
            "order_type": "limit",
            "limit_price": limit,
            "stop_loss": stop,
            "take_profit": target,
            "cycle_id": cycle_id,
        },
    )
    assert decision["approved"] is True, decision["reasons"]

    executed = await tools.ok("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id})

    assert executed["status"] == "filled"
    (sent,) = await book.rows("SELECT * FROM sim.orders WHERE parent_id IS NULL")
    assert sent["client_order_id"] == executed["client_order_id"]
    assert sent["broker_order_id"] == executed["broker_order_id"]
    assert (sent["symbol"], sent["side"], sent["quantity"], sent["order_type"], sent["limit_price"]) == (
        "NVDA",
        "buy",
        Decimal("7"),
        "limit",
        Decimal(limit),
    )
    (recorded,) = await book.rows("SELECT * FROM orders WHERE role = 'entry'")
    assert (recorded["stop_loss"], recorded["take_profit"]) == (Decimal(stop), Decimal(target))
    assert Decimal(executed["position"]["take_profit"]) == Decimal(target)
    # The approved exits went with it, as protective legs working at the broker.
    legs = await book.rows(
        "SELECT order_type, stop_price, limit_price, quantity FROM sim.orders WHERE parent_id IS NOT NULL"
    )
    assert sorted((r["order_type"], r["stop_price"] or r["limit_price"], r["quantity"]) for r in legs) == [
        ("limit", Decimal(target), Decimal(7)),
        ("stop", Decimal(stop), Decimal(7)),
    ]


# --- one approval, one broker order (invariant 2) -------------------------------------------------------


async def test_executing_the_same_approval_twice_replays_the_first_order(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    decision = await tools.approve(cycle_id, "AAPL", "10")
    args = {"approval_id": decision["approval_id"], "cycle_id": cycle_id}

    first = await tools.ok("execute_trade", args)
    second = await tools.ok("execute_trade", args)

    assert first["replayed"] is False and second["replayed"] is True
    for key in ("order_id", "client_order_id", "broker_order_id", "status", "filled_quantity", "avg_fill_price"):
        assert second[key] == first[key], key
    assert await book.value(ENTRIES) == 1
    assert await book.value(SENT_ENTRIES) == 1
    assert await book.value("SELECT count(*) FROM fills") == 1
    assert await book.open_positions() == {"AAPL": Decimal(10)}
    assert await book.broker_positions() == {"AAPL": Decimal(10)}
    assert second["position"]["quantity"] == "10"


async def test_executing_one_approval_concurrently_sends_one_order_and_applies_one_fill(
    server: Any, protocol_mode: str, tools: Tools, book: Book
) -> None:
    cycle_id = await tools.start_cycle()
    decision = await tools.approve(cycle_id, "AAPL", "10")
    args = {"approval_id": decision["approval_id"], "cycle_id": cycle_id}
    results: list[Any] = []

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(server, mode=protocol_mode)) for _ in range(5)]

        async def execute(c: Client) -> None:
            results.append(await c.call_tool("execute_trade", args))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for c in clients:
                    tg.start_soon(execute, c)

    assert len(results) == 5
    errors = [r.content[0].text for r in results if r.is_error]
    assert errors == []
    outcomes = [r.structured_content for r in results]
    assert {o["order_id"] for o in outcomes} == {outcomes[0]["order_id"]}
    assert sorted(o["replayed"] for o in outcomes) == [False, True, True, True, True]
    assert await book.value(SENT_ENTRIES) == 1
    assert await book.value(ENTRIES) == 1
    assert await book.value("SELECT count(*) FROM fills") == 1
    assert await book.open_positions() == {"AAPL": Decimal(10)}
    assert await book.broker_positions() == {"AAPL": Decimal(10)}


# --- positions change only from fills or a sync (invariant 3) -------------------------------------------


async def test_check_risk_alone_changes_no_position(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    before = await book.counts()

    decision = await tools.approve(cycle_id, "AAPL", "10")

    after = await book.counts()
    assert after["risk_decisions"] == before["risk_decisions"] + 1, "check_risk records its approval"
    assert {t: n for t, n in after.items() if t not in ("risk_decisions", "cycle_events")} == {
        t: n for t, n in before.items() if t not in ("risk_decisions", "cycle_events")
    }
    assert await book.open_positions() == {} and await book.broker_positions() == {}
    portfolio = await tools.ok("get_portfolio", {"cycle_id": cycle_id})
    assert portfolio["positions"] == []
    assert await approval_unused(book, decision["approval_id"])


async def test_after_a_filled_buy_the_book_position_equals_the_fill(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()

    executed = await tools.buy(cycle_id, "AMZN", "12")

    (fill,) = await book.rows("SELECT quantity, price FROM fills")
    assert fill["quantity"] == Decimal(12)
    assert fill["price"] == Decimal(executed["avg_fill_price"])
    (position,) = await book.rows("SELECT * FROM positions WHERE status = 'open'")
    assert (position["symbol"], position["side"], position["quantity"]) == ("AMZN", "long", Decimal(12))
    assert position["avg_entry_price"] == fill["price"]
    assert await book.broker_positions() == {"AMZN": Decimal(12)}
    portfolio = await tools.ok("get_portfolio", {"cycle_id": cycle_id})
    (shown,) = portfolio["positions"]
    assert (shown["symbol"], shown["quantity"], shown["avg_entry_price"]) == (
        "AMZN",
        "12",
        executed["avg_fill_price"],
    )


# --- sync (invariant 4) ---------------------------------------------------------------------------------


async def test_sync_closes_a_phantom_the_broker_no_longer_holds(tools: Tools, book: Book, runtime: Runtime) -> None:
    await tools.buy(None, "AAPL", "10")
    await tools.buy(None, "KO", "5")  # still held: one position of two gone is no outage
    await SimControls(cast(SimExchange, runtime.broker)).set_position("AAPL", Decimal(0), Decimal(0))

    result = await tools.ok("sync_positions", {})

    assert result["phantoms_closed"] == ["AAPL"]
    assert result["missing_added"] == [] and result["quantity_updated"] == []
    assert result["changes_made"] is True and result["refused"] is None and result["dry_run"] is False
    assert any("AAPL" in d for d in result["details"])
    assert await book.open_positions() == {"KO": Decimal(5)}
    (closed,) = await book.rows("SELECT status, close_reason FROM positions WHERE symbol = 'AAPL'")
    assert closed["status"] == "closed" and "sync" in closed["close_reason"]
    assert [p["symbol"] for p in (await tools.ok("get_portfolio", {}))["positions"]] == ["KO"]


async def test_sync_adds_a_position_the_broker_holds_and_the_book_lacks(
    tools: Tools, book: Book, runtime: Runtime
) -> None:
    await SimControls(cast(SimExchange, runtime.broker)).set_position("MSFT", Decimal(5), Decimal("401.25"))

    result = await tools.ok("sync_positions", {})

    assert result["missing_added"] == ["MSFT"]
    assert result["phantoms_closed"] == [] and result["quantity_updated"] == []
    assert result["changes_made"] is True
    assert await book.open_positions() == {"MSFT": Decimal(5)}
    (shown,) = (await tools.ok("get_portfolio", {}))["positions"]
    assert (shown["symbol"], shown["side"], shown["quantity"], shown["avg_entry_price"]) == (
        "MSFT",
        "long",
        "5",
        "401.25",
    )


async def test_sync_takes_the_brokers_quantity_when_they_disagree(tools: Tools, book: Book, runtime: Runtime) -> None:
    executed = await tools.buy(None, "AAPL", "10")
    await SimControls(cast(SimExchange, runtime.broker)).set_position(
        "AAPL", Decimal(7), Decimal(executed["avg_fill_price"])
    )

    result = await tools.ok("sync_positions", {})

    assert result["quantity_updated"] == [{"symbol": "AAPL", "from": "10", "to": "7"}]
    assert result["phantoms_closed"] == [] and result["missing_added"] == []
    assert result["changes_made"] is True
    assert await book.open_positions() == {"AAPL": Decimal(7)}


async def test_a_dry_run_reports_the_plan_and_changes_nothing_and_a_second_sync_is_a_no_op(
    tools: Tools, book: Book, runtime: Runtime
) -> None:
    await tools.buy(None, "AAPL", "10")
    await tools.buy(None, "KO", "20")
    broker = SimControls(cast(SimExchange, runtime.broker))
    await broker.set_position("AAPL", Decimal(0), Decimal(0))
    await broker.set_position("KO", Decimal(15), Decimal("60"))
    await broker.set_position("MSFT", Decimal(3), Decimal("400"))
    positions_before = await book.rows("SELECT * FROM positions ORDER BY position_id")

    preview = await tools.ok("sync_positions", {"dry_run": True})

    plan = {
        "phantoms_closed": ["AAPL"],
        "missing_added": ["MSFT"],
        "quantity_updated": [{"symbol": "KO", "from": "20", "to": "15"}],
    }
    assert {k: preview[k] for k in plan} == plan
    assert preview["dry_run"] is True and preview["changes_made"] is False and preview["refused"] is None
    assert await book.rows("SELECT * FROM positions ORDER BY position_id") == positions_before

    applied = await tools.ok("sync_positions", {})
    assert {k: applied[k] for k in plan} == plan
    assert applied["changes_made"] is True and applied["dry_run"] is False
    assert applied["sync_id"] != preview["sync_id"]
    assert await book.open_positions() == {"KO": Decimal(15), "MSFT": Decimal(3)}

    again = await tools.ok("sync_positions", {})
    assert again["changes_made"] is False
    assert again["phantoms_closed"] == [] and again["missing_added"] == [] and again["quantity_updated"] == []
    assert await book.open_positions() == {"KO": Decimal(15), "MSFT": Decimal(3)}


async def test_a_broker_reporting_no_positions_for_a_book_of_four_is_refused_unless_forced(
    tools: Tools, book: Book, runtime: Runtime
) -> None:
    broker = SimControls(cast(SimExchange, runtime.broker))
    held = {"AAPL": Decimal(10), "JPM": Decimal(4), "KO": Decimal(30), "MSFT": Decimal(2)}
    for symbol, quantity in held.items():
        await broker.set_position(symbol, quantity, Decimal("100"))
    assert (await tools.ok("sync_positions", {}))["missing_added"] == sorted(held)
    assert await book.open_positions() == held
    for symbol in held:
        await broker.set_position(symbol, Decimal(0), Decimal(0))
    positions_before = await book.rows("SELECT * FROM positions ORDER BY position_id")

    refused = await tools.ok("sync_positions", {})

    assert isinstance(refused["refused"], str) and "outage" in refused["refused"]
    assert refused["changes_made"] is False
    assert await book.rows("SELECT * FROM positions ORDER BY position_id") == positions_before

    forced = await tools.ok("sync_positions", {"force": True})
    assert forced["refused"] is None
    assert forced["phantoms_closed"] == sorted(held)
    assert forced["changes_made"] is True
    assert await book.open_positions() == {}


# --- malformed input: one-line tool error, no business row ----------------------------------------------


def risk_args(cycle_id: str, /, **override: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "1",
        "order_type": "market",
        "stop_loss": "100",
        "cycle_id": cycle_id,
    }
    args.update(override)
    return {k: v for k, v in args.items() if v is not None}


async def test_malformed_check_risk_arguments_are_one_line_errors_that_write_nothing(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -5}, "quantity"),
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        ({"quantity": "abc"}, "quantity"),
        ({"symbol": "AAPL!!"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"side": "hold"}, "side"),
        ({"order_type": "stop"}, "order_type"),
        ({"order_type": "limit"}, "limit_price"),
        ({"limit_price": "-1", "order_type": "limit"}, "limit_price"),
        ({"stop_loss": "abc"}, "stop_loss"),
        ({"cycle_id": "nope"}, "cycle_id"),
        ({"cycle_id": UNKNOWN_CYCLE}, UNKNOWN_CYCLE),
        ({"bogus": 1}, "bogus"),
    ]
    before = await book.counts()
    for override, named in cases:
        text = await tools.error("check_risk", risk_args(cycle_id, **override))
        assert named in text, f"{override}: the error should name {named!r}: {text!r}"
        assert await book.counts() == before, f"{override} wrote a business row"
    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    assert [p["status"] for p in status["cycles"][0]["phases"]] == ["completed"] + ["pending"] * 9


async def test_an_astronomic_number_is_named_in_a_one_line_error_or_refused_by_a_rule(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    before = await book.counts()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"quantity": "1e30"}, "quantity", "max_order_shares"),
        ({"quantity": "1e100"}, "quantity", "max_order_shares"),
        ({"quantity": "1e400"}, "quantity", "max_order_shares"),
        ({"order_type": "limit", "limit_price": "1e400"}, "limit_price", "buying_power"),
    ]
    for override, argument, rule in cases:
        result = await tools.client.call_tool("check_risk", risk_args(cycle_id, **override))
        if result.is_error:
            text = result.content[0].text  # type: ignore[union-attr]
            assert "\n" not in text
            assert argument in text, f"{override}: {text!r}"
            assert await book.counts() == before
        else:
            decision = result.structured_content
            assert decision is not None and decision["approved"] is False
            assert rule in {c["rule"] for c in decision["checks"] if not c["passed"]}, override


async def test_malformed_arguments_to_every_tool_are_one_line_errors_that_write_nothing(
    tools: Tools, book: Book
) -> None:
    cycle_id = await tools.start_cycle()
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("start_cycle", {"mode": "yolo"}, "mode"),
        ("start_cycle", {"market": "XX", "agent_id": "other"}, "market"),
        ("start_cycle", {"agent_id": "bad agent!", "force": True}, "agent_id"),
        ("start_cycle", {"bogus": 1}, "bogus"),
        ("get_portfolio", {"cycle_id": "nope"}, "cycle_id"),
        ("get_portfolio", {"cycle_id": UNKNOWN_CYCLE}, UNKNOWN_CYCLE),
        ("get_portfolio", {"bogus": 1}, "bogus"),
        ("sync_positions", {"cycle_id": "nope"}, "cycle_id"),
        ("sync_positions", {"dry_run": "maybe"}, "dry_run"),
        ("scan_market", {"limit": 0, "cycle_id": cycle_id}, "limit"),
        ("scan_market", {"cycle_id": UNKNOWN_CYCLE}, UNKNOWN_CYCLE),
        ("get_quote", {"symbol": "AAPL!!", "cycle_id": cycle_id}, "symbol"),
        ("get_quote", {"symbol": "", "cycle_id": cycle_id}, "symbol"),
        ("get_quote", {"cycle_id": cycle_id}, "symbol"),
        ("execute_trade", {"approval_id": "abc", "cycle_id": cycle_id}, "approval_id"),
        ("execute_trade", {"approval_id": str(uuid.uuid4()), "cycle_id": "nope"}, "cycle_id"),
        ("execute_trade", {"approval_id": str(uuid.uuid4()), "cycle_id": UNKNOWN_CYCLE}, UNKNOWN_CYCLE),
        ("log_decision", {"cycle_id": UNKNOWN_CYCLE, "decision": "skip", "reasoning": "x"}, UNKNOWN_CYCLE),
        ("log_decision", {"cycle_id": "nope", "decision": "skip", "reasoning": "x"}, "cycle_id"),
        ("log_decision", {"cycle_id": cycle_id, "decision": "x" * 65, "reasoning": "x"}, "decision"),
        ("log_decision", {"cycle_id": cycle_id, "decision": "  ", "reasoning": "x"}, "decision"),
        ("log_decision", {"cycle_id": cycle_id, "decision": "skip", "reasoning": "x", "symbol": "$$"}, "symbol"),
        ("complete_cycle", {"cycle_id": "nope"}, "cycle_id"),
        ("complete_cycle", {"cycle_id": UNKNOWN_CYCLE}, UNKNOWN_CYCLE),
        ("complete_cycle", {}, "cycle_id"),
        ("workflow_status", {"cycle_id": "nope"}, "cycle_id"),
        ("workflow_status", {"cycle_id": UNKNOWN_CYCLE}, UNKNOWN_CYCLE),
        ("workflow_status", {"bogus": 1}, "bogus"),
    ]
    before = await book.counts()
    for tool, args, named in cases:
        text = await tools.error(tool, args)
        assert named in text, f"{tool}({args}): the error should name {named!r}: {text!r}"
        assert await book.counts() == before, f"{tool}({args}) wrote a business row"
    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    assert status["cycles"][0]["status"] == "active"
    assert [p["status"] for p in status["cycles"][0]["phases"]] == ["completed"] + ["pending"] * 9


async def test_a_second_start_cycle_for_an_agent_with_an_active_cycle_names_that_cycle(
    tools: Tools, book: Book
) -> None:
    active = await tools.start_cycle()
    before = await book.counts()

    text = await tools.error("start_cycle", {})
    assert active in text
    text = await tools.error("start_cycle", {"mode": "scan", "force": True})
    assert active in text

    assert await book.counts() == before
    status = await tools.ok("workflow_status", {"agent_id": "test_agent"})
    assert [c["cycle_id"] for c in status["cycles"]] == [active]
    # The rule is per agent: another agent may start its own cycle at the same time.
    assert await tools.start_cycle(agent_id="someone_else") != active
