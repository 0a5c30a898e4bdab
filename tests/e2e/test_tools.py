"""The public tool contract (DESIGN.md sections 3 and 4), through the real MCP client in both protocol eras."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from mcp import Client

from catalyst_mcp.domain.roles import Role, may_call
from catalyst_mcp.markets.clocks import FixedClock

if TYPE_CHECKING:
    from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

PHASES = ["INIT", "PORTFOLIO", "SCAN", "ANALYZE", "DECIDE", "VALIDATE", "EXECUTE", "MONITOR", "LOG", "COMPLETE"]
ALL_DONE = "".join(f"[✓ {p}]" for p in PHASES)
CYCLE_ID = re.compile(r"^us_\d{8}_\d{6}_[0-9a-f]{6}$")
PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
UTC_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$")

# Result keys that carry money or quantities (DESIGN.md section 3).
DECIMAL_KEYS = {
    "cash", "equity", "buying_power", "day_pnl", "quantity", "avg_entry_price", "market_price",
    "market_value", "unrealized_pnl", "unrealized_pnl_pct", "stop_loss", "take_profit", "price",
    "change_pct", "gap_pct", "spread_pct", "volume", "relative_volume", "score", "bid", "ask", "last", "bid_size",
    "ask_size",
    "limit_price", "suggested_quantity", "filled_quantity", "avg_fill_price", "from", "to",
    "rsi_14", "sma_10", "sma_20", "sma_50", "ema_9", "ema_21", "line", "signal", "histogram", "atr_14", "vwap",
}  # fmt: skip

# tool -> (read-only, destructive, idempotent, open-world), arguments, required arguments, result keys
CONTRACT: dict[str, tuple[tuple[bool, bool, bool, bool], set[str], set[str], set[str]]] = {
    "start_cycle": (
        (False, True, False, True),
        {"agent_id", "market", "mode", "force"},
        set(),
        {"cycle_id", "market_open", "trading_state", "broker_mode", "sync", "directives"},
    ),
    "get_portfolio": ((True, False, True, True), {"cycle_id"}, set(), {"account", "positions"}),
    "sync_positions": (
        (False, True, True, True),
        {"dry_run", "force", "cycle_id"},
        set(),
        {"phantoms_closed", "missing_added", "quantity_updated", "changes_made"}
        | {"sync_id", "dry_run", "refused", "details"},
    ),
    "scan_market": (
        (True, False, True, True),
        {"cycle_id", "limit"},
        set(),
        {"candidates", "tier", "tier_level", "tier_count", "source", "considered", "passed_filters", "qualified"}
        | {"scan_id", "at", "summary"},
    ),
    "get_quote": (
        (True, False, True, True),
        {"symbol", "cycle_id"},
        {"symbol"},
        {"symbol", "bid", "ask", "last", "bid_size", "ask_size", "at"},
    ),
    "get_technicals": (
        (True, False, True, True),
        {"symbol", "cycle_id"},
        {"symbol"},
        {"symbol", "at", "rsi_14", "sma_10", "sma_20", "sma_50", "ema_9", "ema_21", "macd", "atr_14", "vwap"}
        | {"relative_volume"},
    ),
    "check_risk": (
        (True, False, False, True),
        {"symbol", "side", "quantity", "order_type", "limit_price", "stop_loss", "take_profit", "cycle_id"},
        {"symbol", "side", "quantity", "order_type"},
        {"approved", "approval_id", "expires_at", "intent", "checks", "reasons"}
        | {"suggested_quantity", "limits_version"},
    ),
    "execute_trade": (
        (False, True, True, True),
        {"approval_id", "cycle_id", "confirmation"},
        {"approval_id"},
        {"status", "order_id", "client_order_id", "broker_order_id", "symbol", "side", "quantity"}
        | {"filled_quantity", "avg_fill_price", "position", "replayed"},
    ),
    "close_position": (
        (False, True, False, True),
        {"symbol", "quantity", "reason", "cycle_id"},
        {"symbol", "reason"},
        {"status", "order_id", "client_order_id", "broker_order_id", "symbol", "side", "quantity"}
        | {"filled_quantity", "avg_fill_price", "position", "replayed", "approval"},
    ),
    "log_decision": (
        (False, False, False, False),
        {"cycle_id", "decision", "reasoning", "symbol"},
        {"cycle_id", "decision", "reasoning"},
        {"decision_id"},
    ),
    "complete_cycle": (
        (False, False, True, False),
        {"cycle_id", "summary", "outcome"},
        {"cycle_id"},
        {"cycle_id", "agent_id", "market", "mode", "status", "current_phase", "started_at"}
        | {"updated_at", "phases", "progress"},
    ),
    "workflow_status": (
        (True, False, True, False),
        {"cycle_id", "agent_id", "limit", "cursor"},
        set(),
        {"broker_mode", "trading_state", "cycles", "agents"},
    ),
    # added by later issues (the contract's "later" tools)
    "list_cycles": (
        (True, False, True, False),
        {"agent_id", "since", "limit", "cursor"},
        set(),
        {"broker_mode", "trading_state", "cycles"},
    ),
    "get_orders": ((True, False, True, True), {"status", "symbol", "cycle_id"}, set(), {"orders", "truncated"}),
    "cancel_order": ((False, True, True, True), {"order_id"}, {"order_id"}, {"order", "cancelled", "reason"}),
    # supervision (DESIGN §3)
    "record_heartbeat": (
        (False, False, True, False),
        {"agent_id"},
        set(),
        {"agent_id", "at", "market_open", "trading_state", "broker_mode", "directives"},
    ),
    "halt_trading": (
        (False, True, True, True),
        {"reason", "cancel_open_orders"},
        {"reason"},
        {"trading_state", "cancelled_orders", "changed_by", "changed_at"},
    ),
    "resume_trading": (
        (False, False, True, False),
        {"state", "reason"},
        {"state", "reason"},
        {"trading_state", "changed_by", "changed_at"},
    ),
    "send_directive": (
        (False, False, False, False),
        {"agent_id", "text", "expires_in_minutes"},
        {"agent_id", "text"},
        {"directive_id", "agent_id", "expires_at"},
    ),
    "list_audit": ((True, False, True, False), {"since", "tool", "subject", "limit"}, set(), {"events"}),
}


def check_wire_format(value: Any, path: str = "$") -> int:
    """Assert every money/quantity value is a plain decimal string and every timestamp ISO UTC with +00:00.

    Returns how many values were checked, so a caller can tell the walk found something."""
    checked = 0
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if item is not None and key in DECIMAL_KEYS:
                assert isinstance(item, str), f"{where} must be a decimal string, got {item!r}"
                assert PLAIN_DECIMAL.fullmatch(item), f"{where} is not plain notation: {item!r}"
                checked += 1
            elif item is not None and (key == "at" or key.endswith("_at")):
                assert isinstance(item, str) and UTC_ISO.fullmatch(item), f"{where} is not ISO UTC: {item!r}"
                assert datetime.fromisoformat(item).utcoffset() == timedelta(0)
                checked += 1
            else:
                checked += check_wire_format(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            checked += check_wire_format(item, f"{path}[{i}]")
    return checked


def failed_rules(decision: dict[str, Any]) -> set[str]:
    return {c["rule"] for c in decision["checks"] if not c["passed"]}


def phase(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["phases"] if p["name"] == name)


# --- the tool list -------------------------------------------------------------------------------------


async def test_the_server_lists_a_trader_exactly_the_contract_tools_of_its_role(client: Client) -> None:
    listed = await client.list_tools()
    assert sorted(t.name for t in listed.tools) == sorted(n for n in CONTRACT if may_call(Role.TRADER, n))
    assert len(listed.tools) == 16 and len(CONTRACT) == 20


async def test_every_tool_declares_all_four_hints_as_the_contract_table_says(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        a = tool.annotations
        assert a is not None, f"{tool.name} has no annotations"
        hints = (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
        assert None not in hints, f"{tool.name} leaves a hint unset: {hints}"
        assert hints == CONTRACT[tool.name][0], f"{tool.name}: {hints} != {CONTRACT[tool.name][0]}"


async def test_every_tool_publishes_an_output_schema_with_the_contract_result_keys(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        schema = tool.output_schema
        assert schema is not None, f"{tool.name} publishes no outputSchema"
        missing = CONTRACT[tool.name][3] - set(schema.get("properties", {}))
        assert not missing, f"{tool.name} outputSchema lacks {missing}"


async def test_every_tool_takes_exactly_the_contract_arguments(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        _, arguments, required, _ = CONTRACT[tool.name]
        schema = tool.input_schema
        assert set(schema.get("properties", {})) == arguments, tool.name
        assert set(schema.get("required", [])) == required, tool.name


async def test_the_server_instructions_state_the_order_of_calls(client: Client) -> None:
    instructions = client.instructions
    assert instructions is not None
    flat = " ".join(instructions.split())
    assert (
        "start_cycle → get_portfolio → scan_market → get_quote → check_risk → execute_trade → log_decision"
        " → complete_cycle"
    ) in flat


# --- a full cycle --------------------------------------------------------------------------------------


async def test_a_full_cycle_runs_every_phase_to_completion(tools: Tools, book: Book, clock: FixedClock) -> None:
    started = await tools.ok("start_cycle", {})
    cycle_id = started["cycle_id"]
    assert CYCLE_ID.fullmatch(cycle_id)
    new_york = clock.now().astimezone(ZoneInfo("America/New_York"))
    assert cycle_id.startswith(new_york.strftime("us_%Y%m%d_%H%M%S_")), "the id carries New York time"
    assert started["market_open"] is True
    assert started["trading_state"] == "active"
    assert started["broker_mode"] == "paper"
    assert started["sync"]["changes_made"] is False and started["sync"]["refused"] is None
    checked = check_wire_format(started)

    portfolio = await tools.ok("get_portfolio", {"cycle_id": cycle_id})
    assert portfolio["positions"] == []
    assert portfolio["account"]["currency"] == "USD"
    assert Decimal(portfolio["account"]["cash"]) > 0
    checked += check_wire_format(portfolio)

    scan = await tools.ok("scan_market", {"cycle_id": cycle_id, "limit": 3})
    assert 1 <= len(scan["candidates"]) <= 3
    scores = [Decimal(c["score"]) for c in scan["candidates"]]
    assert scores == sorted(scores, reverse=True), "candidates come best first"
    assert scan["source"] == "simulated" and scan["tier"] in ("strong", "moderate", "mild", "any")
    assert 1 <= scan["tier_level"] <= scan["tier_count"] and len(scan["candidates"]) <= scan["qualified"]
    checked += check_wire_format(scan)
    symbol = scan["candidates"][0]["symbol"]

    quote = await tools.ok("get_quote", {"symbol": symbol, "cycle_id": cycle_id})
    assert quote["symbol"] == symbol
    assert Decimal(quote["bid"]) <= Decimal(quote["last"]) <= Decimal(quote["ask"])
    checked += check_wire_format(quote)

    stop = str((Decimal(quote["bid"]) * Decimal("0.95")).quantize(Decimal("0.01")))
    decision = await tools.ok(
        "check_risk",
        {
            "symbol": symbol,
            "side": "buy",
            "quantity": 5,
            "order_type": "market",
            "stop_loss": stop,
            "cycle_id": cycle_id,
        },
    )
    assert decision["approved"] is True, decision["reasons"]
    assert decision["reasons"] == [] and failed_rules(decision) == set()
    assert decision["intent"] == {
        "symbol": symbol,
        "side": "buy",
        "quantity": "5",
        "order_type": "market",
        "limit_price": None,
        "stop_loss": stop,
        "take_profit": None,
    }
    expires = datetime.fromisoformat(decision["expires_at"])
    assert expires == clock.now() + timedelta(seconds=60)
    checked += check_wire_format(decision)

    executed = await tools.ok("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id})
    assert executed["status"] == "filled"
    assert executed["replayed"] is False
    assert (executed["symbol"], executed["side"], executed["quantity"]) == (symbol, "buy", "5")
    assert executed["filled_quantity"] == "5"
    position = executed["position"]
    assert position is not None
    assert (position["symbol"], position["side"], position["quantity"]) == (symbol, "long", "5")
    assert position["avg_entry_price"] == executed["avg_fill_price"]
    assert position["stop_loss"] == stop
    checked += check_wire_format(executed)

    logged = await tools.ok(
        "log_decision",
        {"cycle_id": cycle_id, "decision": "trade", "reasoning": "top of the scan", "symbol": symbol},
    )
    assert isinstance(logged["decision_id"], int)
    assert await book.value("SELECT reasoning FROM decisions WHERE decision_id = $1", logged["decision_id"]) == (
        "top of the scan"
    )

    final = await tools.ok("complete_cycle", {"cycle_id": cycle_id, "summary": "one buy"})
    assert final["cycle_id"] == cycle_id
    assert final["status"] == "completed"
    assert final["current_phase"] == "COMPLETE"
    assert final["progress"] == ALL_DONE
    assert [p["name"] for p in final["phases"]] == PHASES
    assert all(p["status"] == "completed" for p in final["phases"])
    checked += check_wire_format(final)
    assert checked > 40, "the wire-format walk must have seen the money, quantity and time fields"

    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    assert [c["cycle_id"] for c in status["cycles"]] == [cycle_id]
    assert status["cycles"][0] == final


async def test_workflow_status_gives_the_ten_phases_in_order_while_a_cycle_runs(tools: Tools) -> None:
    cycle_id = await tools.start_cycle()
    await tools.ok("get_portfolio", {"cycle_id": cycle_id})

    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    (cycle,) = status["cycles"]
    assert [p["name"] for p in cycle["phases"]] == PHASES
    assert cycle["status"] == "active"
    assert cycle["agent_id"] == "test_agent" and cycle["market"] == "US" and cycle["mode"] == "trade"
    assert cycle["progress"].startswith("[✓ INIT][✓ PORTFOLIO]")
    assert [p["status"] for p in cycle["phases"][2:]] == ["pending"] * 8
    assert check_wire_format(status) >= 4


async def test_a_running_cycle_shows_pending_phases_as_the_documented_progress_bar(tools: Tools) -> None:
    cycle_id = await tools.start_cycle()
    await tools.ok("get_portfolio", {"cycle_id": cycle_id})

    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})

    assert status["cycles"][0]["progress"] == "[✓ INIT][✓ PORTFOLIO]" + "".join(f"[ {p}]" for p in PHASES[2:])


async def test_workflow_status_on_a_fresh_database_lists_no_cycles_and_paper_mode(tools: Tools) -> None:
    status = await tools.ok("workflow_status", {})
    assert {k: v for k, v in status.items() if k != "next_cursor"} == {
        "broker_mode": "paper",
        "trading_state": "active",
        "cycles": [],
        "agents": [],
        "monitor": None,
    }
    assert status.get("next_cursor") is None


async def test_workflow_status_without_arguments_shows_the_latest_cycle_of_every_agent(tools: Tools) -> None:
    first = await tools.start_cycle(agent_id="alpha")
    await tools.ok("complete_cycle", {"cycle_id": first})
    second = await tools.start_cycle(agent_id="alpha")
    other = await tools.start_cycle(agent_id="beta")

    everyone = await tools.ok("workflow_status", {})
    latest = {c["agent_id"]: c["cycle_id"] for c in everyone["cycles"]}
    assert latest == {"alpha": second, "beta": other}

    only_beta = await tools.ok("workflow_status", {"agent_id": "beta"})
    assert [c["cycle_id"] for c in only_beta["cycles"]] == [other]


async def test_decimals_given_in_exponent_notation_come_back_in_plain_notation(tools: Tools) -> None:
    cycle_id = await tools.start_cycle()
    quote = await tools.ok("get_quote", {"symbol": "MSFT"})
    assert quote["lot_size"] == "1"
    stop = (Decimal(quote["bid"]) * Decimal("0.9")).quantize(Decimal("1"))
    decision = await tools.ok(
        "check_risk",
        {
            "symbol": "msft",
            "side": "buy",
            "quantity": "1E+1",
            "order_type": "market",
            "stop_loss": f"{stop:E}",
            "cycle_id": cycle_id,
        },
    )
    assert decision["approved"] is True, decision["reasons"]
    assert decision["intent"]["symbol"] == "MSFT"
    assert decision["intent"]["quantity"] == "10"
    assert decision["intent"]["stop_loss"] == str(stop)
    executed = await tools.ok("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id})
    assert executed["quantity"] == "10" and executed["filled_quantity"] == "10"
    assert check_wire_format(executed) >= 10


# --- risk refusals are results, not errors -------------------------------------------------------------


async def test_an_absurd_size_is_refused_with_every_failed_rule_named(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()
    quote = await tools.ok("get_quote", {"symbol": "AAPL", "cycle_id": cycle_id})
    stop = str((Decimal(quote["bid"]) * Decimal("0.95")).quantize(Decimal("0.01")))

    decision = await tools.ok(
        "check_risk",
        {
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "1000000",
            "order_type": "market",
            "stop_loss": stop,
            "cycle_id": cycle_id,
        },
    )

    assert decision["approved"] is False
    assert decision["approval_id"] is None and decision["expires_at"] is None
    failed = failed_rules(decision)
    assert failed == {"max_order_shares", "max_position_value", "concentration", "buying_power", "max_loss_per_trade"}
    by_rule = {c["rule"]: c for c in decision["checks"]}
    assert by_rule["max_order_shares"]["actual"] == "1000000"
    assert by_rule["max_order_shares"]["limit"] == "10000"
    assert len(decision["reasons"]) == len(failed)
    assert any("1000000" in r and "10000" in r for r in decision["reasons"])
    # Only size rules failed, so the largest whole-share quantity that fits is suggested.
    # Here the binding limit is concentration: 20% of the 100000 equity.
    ask = Decimal(quote["ask"])
    suggested = Decimal(decision["suggested_quantity"])
    assert suggested > 0 and suggested * ask <= Decimal("20000") < (suggested + 1) * ask

    assert await book.value("SELECT count(*) FROM orders") == 0
    row = await book.rows("SELECT approved, approval_id, cycle_id FROM risk_decisions")
    assert [(r["approved"], r["approval_id"], r["cycle_id"]) for r in row] == [(False, None, cycle_id)]

    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    (cycle,) = status["cycles"]
    validate = phase(cycle, "VALIDATE")
    assert validate["status"] == "completed"
    assert "approved=false" in validate["detail"]
    assert all(rule in validate["detail"] for rule in failed)
    assert "[✓ DECIDE][✓ VALIDATE]" in cycle["progress"]


async def test_an_unknown_well_formed_symbol_is_a_refusal_not_a_tool_error(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle()

    quote = await tools.ok("get_quote", {"symbol": "ZZZZ", "cycle_id": cycle_id})
    assert quote["symbol"] == "ZZZZ"
    assert quote["bid"] is None and quote["ask"] is None and quote["last"] is None
    assert "ZZZZ" in quote["reason"]

    decision = await tools.ok(
        "check_risk",
        {
            "symbol": "ZZZZ",
            "side": "buy",
            "quantity": 1,
            "order_type": "market",
            "stop_loss": "10",
            "cycle_id": cycle_id,
        },
    )
    assert decision["approved"] is False and decision["approval_id"] is None
    assert "symbol_tradable" in failed_rules(decision)
    assert any("ZZZZ" in r for r in decision["reasons"])
    assert await book.value("SELECT count(*) FROM orders") == 0


async def test_a_buy_without_a_stop_loss_is_refused_by_the_stop_loss_rule(tools: Tools) -> None:
    cycle_id = await tools.start_cycle()
    decision = await tools.ok(
        "check_risk",
        {"symbol": "AAPL", "side": "buy", "quantity": 1, "order_type": "market", "cycle_id": cycle_id},
    )
    assert decision["approved"] is False and decision["approval_id"] is None
    assert failed_rules(decision) == {"stop_loss"}
    assert decision["suggested_quantity"] is None, "a size would not fix a missing stop"
    (stop_check,) = [c for c in decision["checks"] if c["rule"] == "stop_loss"]
    assert stop_check["message"] in decision["reasons"]

    # The same order with a stop below the price passes: the refusal was the stop, nothing else.
    approved = await tools.approve(cycle_id, "AAPL", "1")
    assert failed_rules(approved) == set()


async def test_a_sell_without_a_long_position_is_refused_as_short_selling(tools: Tools) -> None:
    cycle_id = await tools.start_cycle()
    decision = await tools.ok(
        "check_risk",
        {"symbol": "AAPL", "side": "sell", "quantity": 3, "order_type": "market", "cycle_id": cycle_id},
    )
    assert decision["approved"] is False and decision["approval_id"] is None
    assert "long_only" in failed_rules(decision)
    (check,) = [c for c in decision["checks"] if c["rule"] == "long_only"]
    assert (check["limit"], check["actual"]) == ("0", "3")


# --- scan mode -----------------------------------------------------------------------------------------


async def test_a_scan_cycle_allows_reading_but_refuses_check_risk(tools: Tools, book: Book) -> None:
    cycle_id = await tools.start_cycle(mode="scan")
    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    assert status["cycles"][0]["mode"] == "scan"
    await tools.ok("scan_market", {"cycle_id": cycle_id})
    await tools.ok("get_quote", {"symbol": "AAPL", "cycle_id": cycle_id})
    before = await book.counts()

    text = await tools.error(
        "check_risk",
        {
            "symbol": "AAPL",
            "side": "buy",
            "quantity": 1,
            "order_type": "market",
            "stop_loss": "100",
            "cycle_id": cycle_id,
        },
    )

    assert "scan" in text and cycle_id in text
    assert await book.counts() == before
    after = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    assert phase(after["cycles"][0], "DECIDE")["status"] == "pending"


async def test_a_scan_cycle_refuses_to_execute_an_approval(tools: Tools, book: Book) -> None:
    decision = await tools.approve(None)  # approved outside any cycle
    cycle_id = await tools.start_cycle(mode="scan")
    before = await book.counts()

    text = await tools.error("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id})

    assert "scan" in text
    assert await book.counts() == before
    assert await book.value("SELECT used_at FROM risk_decisions WHERE approved") is None


async def test_timestamps_are_utc_even_for_a_clock_given_in_another_zone(tools: Tools, clock: FixedClock) -> None:
    clock.set(clock.now().astimezone(ZoneInfo("America/New_York")))
    cycle_id = await tools.start_cycle()
    status = await tools.ok("workflow_status", {"cycle_id": cycle_id})
    started_at = status["cycles"][0]["started_at"]
    assert started_at.endswith("+00:00")
    assert datetime.fromisoformat(started_at) == clock.now().astimezone(UTC)
