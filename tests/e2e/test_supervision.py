"""Supervision in process, in both protocol eras: the role table against every tool, the supervisor's halt and
resume, directives, heartbeats and the audit of every call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import TOOLS_OF, Role
from catalyst_mcp.server.app import SPECS, build_server
from catalyst_mcp.server.toolkit import Serving
from catalyst_mcp.services.audit import call_row_of
from catalyst_mcp.store import audit as audit_store
from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

REGISTERED = frozenset(spec.fn.__name__ for spec in SPECS)
Open = Callable[[Role], AbstractAsyncContextManager[Tools]]


@pytest.fixture
def as_role(settings: Settings, runtime: Runtime, protocol_mode: str) -> Open:
    """A client of a server whose callers all have one role (as over stdio or HTTP without tokens)."""
    servers: dict[Role, MCPServer[Serving]] = {}

    @asynccontextmanager
    async def open_as(role: Role) -> AsyncIterator[Tools]:
        server = servers.setdefault(role, build_server(settings, runtime=runtime, role=role))
        async with Client(server, mode=protocol_mode) as client:
            yield Tools(client)

    return open_as


# --- the role table -----------------------------------------------------------------------------------------


def test_every_registered_tool_belongs_to_a_role_and_every_role_tool_is_registered_or_announced() -> None:
    assert TOOLS_OF[Role.TRADER] | TOOLS_OF[Role.SUPERVISOR] >= REGISTERED
    assert TOOLS_OF[Role.TRADER] | TOOLS_OF[Role.SUPERVISOR] == REGISTERED


@pytest.mark.parametrize("role", list(Role))
async def test_a_client_sees_exactly_its_roles_tools_and_is_refused_every_other_in_one_line(
    as_role: Open, role: Role
) -> None:
    async with as_role(role) as tools:
        listed = {t.name for t in (await tools.client.list_tools()).tools}
        assert listed == REGISTERED & TOOLS_OF[role]
        for name in sorted(REGISTERED - TOOLS_OF[role]):
            text = await tools.error(name, {})
            assert text == f"{name}: not available to the {role.value} role"
        for name in sorted(listed):  # admitted: whatever the answer, it is not the gate's refusal
            result = await tools.client.call_tool(name, {})
            text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
            assert text != f"{name}: not available to the {role.value} role", name


@pytest.mark.parametrize("role", list(Role))
async def test_resources_and_prompts_are_open_to_every_role(as_role: Open, role: Role) -> None:
    async with as_role(role) as tools:
        uris = {str(r.uri) for r in (await tools.client.list_resources()).resources}
        assert "catalyst://trading-state" in uris and "catalyst://positions" in uris
        state = await tools.client.read_resource("catalyst://trading-state")
        assert json.loads(state.contents[0].text)["state"] == "active"  # type: ignore[union-attr]
        assert [p.name for p in (await tools.client.list_prompts()).prompts] == ["cycle_report"]


# --- halt and resume ----------------------------------------------------------------------------------------


async def test_a_supervisor_halts_everything_and_only_a_supervisor_resumes(as_role: Open, book: Book) -> None:
    async with as_role(Role.TRADER) as trader, as_role(Role.SUPERVISOR) as supervisor:
        approval = await trader.approve(None, "AAPL", "5")
        halted = await supervisor.ok("halt_trading", {"reason": "desk review"})
        assert halted["trading_state"] == "halted" and halted["cancelled_orders"] == []

        refused = await trader.ok("execute_trade", {"approval_id": approval["approval_id"]})
        assert refused["status"] == "rejected" and "halted" in (refused["reason"] or "")
        assert "halt" in " ".join((await trader.ok("check_risk", _buy("MSFT")))["reasons"]).lower()
        assert "not available to the trader role" in await trader.error(
            "resume_trading", {"state": "active", "reason": "I want to trade"}
        )
        assert await book.value("SELECT state FROM trading_state WHERE market = 'US'") == "halted"

        resumed = await supervisor.ok("resume_trading", {"state": "reducing", "reason": "exits only for now"})
        assert resumed["trading_state"] == "reducing"
        entry = await trader.ok("check_risk", _buy("MSFT"))
        assert entry["approved"] is False and "trading_state" in {c["rule"] for c in entry["checks"] if not c["passed"]}
        await supervisor.ok("resume_trading", {"state": "active", "reason": "clear"})
        await trader.buy(None, "MSFT", "2")


async def test_a_halt_set_by_the_daily_loss_limit_is_lifted_by_a_supervisor_only(as_role: Open, book: Book) -> None:
    async with book.pool.acquire() as conn:  # as check_risk sets it when the day's loss reaches the limit
        await conn.execute(
            "UPDATE trading_state SET state = 'halted', reason = 'daily loss', changed_by = 'risk' WHERE market = 'US'"
        )
    async with as_role(Role.SUPERVISOR) as supervisor:
        resumed = await supervisor.ok("resume_trading", {"state": "active", "reason": "loss reviewed"})
    assert resumed["trading_state"] == "active" and resumed["changed_by"] != "risk"


async def test_a_halt_cancels_working_entries_unless_told_not_to(as_role: Open, book: Book, runtime: Runtime) -> None:
    async with as_role(Role.TRADER) as trader, as_role(Role.SUPERVISOR) as supervisor:
        resting = await _resting_buy(trader, runtime, "AAPL")
        kept = await supervisor.ok("halt_trading", {"reason": "pause", "cancel_open_orders": False})
        assert kept["cancelled_orders"] == []
        assert await book.value("SELECT status FROM orders WHERE order_id = $1", resting["order_id"]) == "accepted"
        await supervisor.ok("resume_trading", {"state": "active", "reason": "go"})
        cancelled = await supervisor.ok("halt_trading", {"reason": "stop"})
        assert cancelled["cancelled_orders"] == [resting["client_order_id"]]
        assert await book.value("SELECT status FROM orders WHERE order_id = $1", resting["order_id"]) == "cancelled"


@pytest.mark.parametrize("args", [{"reason": " "}, {"reason": "x" * 501}, {"state": "halted", "reason": "no"}])
async def test_bad_supervisor_input_is_one_line_and_changes_nothing(as_role: Open, book: Book, args: Any) -> None:
    tool = "resume_trading" if "state" in args else "halt_trading"
    async with as_role(Role.SUPERVISOR) as supervisor:
        await supervisor.error(tool, args)
    assert await book.value("SELECT state FROM trading_state WHERE market = 'US'") == "active"


# --- directives and heartbeats --------------------------------------------------------------------------------


async def test_a_directive_reaches_its_agent_once_in_start_cycle_or_heartbeat(as_role: Open) -> None:
    async with as_role(Role.SUPERVISOR) as supervisor, as_role(Role.TRADER) as trader:
        first = await supervisor.ok("send_directive", {"agent_id": "alpha", "text": "no new entries in energy"})
        await supervisor.ok("send_directive", {"agent_id": "beta", "text": "for beta only"})
        second = await supervisor.ok(
            "send_directive", {"agent_id": "alpha", "text": "close by 15:30", "expires_in_minutes": 30}
        )
        beat = await trader.ok("record_heartbeat", {"agent_id": "alpha"})
        assert [d["directive_id"] for d in beat["directives"]] == [first["directive_id"], second["directive_id"]]
        assert beat["directives"][0]["text"] == "no new entries in energy" and beat["directives"][0]["from"]
        assert (await trader.ok("record_heartbeat", {"agent_id": "alpha"}))["directives"] == []
        assert (await trader.ok("start_cycle", {"agent_id": "alpha"}))["directives"] == []
        started = await trader.ok("start_cycle", {"agent_id": "beta"})
        assert [d["text"] for d in started["directives"]] == ["for beta only"]


async def test_an_expired_directive_is_never_delivered(as_role: Open, clock: Any) -> None:
    from datetime import timedelta

    async with as_role(Role.SUPERVISOR) as supervisor, as_role(Role.TRADER) as trader:
        await supervisor.ok("send_directive", {"agent_id": "late", "text": "stale", "expires_in_minutes": 1})
        clock.advance(timedelta(minutes=2))
        assert (await trader.ok("record_heartbeat", {"agent_id": "late"}))["directives"] == []


async def test_a_heartbeat_shows_in_workflow_status_and_says_what_the_agent_needs(as_role: Open) -> None:
    async with as_role(Role.TRADER) as trader:
        beat = await trader.ok("record_heartbeat", {"agent_id": "watcher"})
        assert (beat["broker_mode"], beat["trading_state"], beat["market_open"]) == ("paper", "active", True)
        agents = (await trader.ok("workflow_status", {"agent_id": "watcher"}))["agents"]
        assert [(a["agent_id"], a["last_tool"], a["alive"]) for a in agents] == [("watcher", "record_heartbeat", True)]


# --- the audit of every call ----------------------------------------------------------------------------------


async def test_every_call_reads_included_leaves_a_row_with_caller_outcome_and_duration(
    as_role: Open, book: Book
) -> None:
    async with as_role(Role.OBSERVER) as observer:
        await observer.ok("workflow_status")
        await observer.error("execute_trade", {"approval_id": "x"})
        await observer.error("get_quote", {"symbol": "AAPL", "bogus": 1})
    async with as_role(Role.SUPERVISOR) as supervisor:
        events = (await supervisor.ok("list_audit", {"limit": 10}))["events"]
    calls = [e for e in reversed(events) if e["kind"] == "call"]
    assert [(e["tool"], e["role"], e["outcome"].split(":")[0]) for e in calls[:3]] == [
        ("workflow_status", "observer", "ok"),
        ("execute_trade", "observer", "error"),
        ("get_quote", "observer", "error"),
    ]
    assert all(e["duration_ms"] is not None and e["duration_ms"] >= 0 for e in calls)
    assert calls[0]["client"] and calls[0]["subject"] is None  # in process: the transport identifies no one
    assert await book.value("SELECT count(*) FROM audit_events WHERE kind = 'call'") == 4  # list_audit too


async def test_list_audit_filters_by_tool_and_since_newest_first(as_role: Open) -> None:
    async with as_role(Role.TRADER) as trader:
        await trader.ok("get_quote", {"symbol": "AAPL"})
        await trader.ok("get_quote", {"symbol": "MSFT"})
        await trader.ok("workflow_status")
    async with as_role(Role.SUPERVISOR) as supervisor:
        quotes = (await supervisor.ok("list_audit", {"tool": "get_quote"}))["events"]
        assert [e["arguments"]["symbol"] for e in quotes] == ["MSFT", "AAPL"]
        assert (await supervisor.ok("list_audit", {"since": "2999-01-01T00:00:00Z"}))["events"] == []
        assert (await supervisor.ok("list_audit", {"subject": "nobody"}))["events"] == []


async def test_secrets_in_arguments_are_redacted_before_they_are_written(as_role: Open, book: Book) -> None:
    async with as_role(Role.TRADER) as trader:
        await trader.error("get_quote", {"symbol": "AAPL", "api_key": "sk-very-secret", "token": "cat_abc"})
    stored = await book.value("SELECT arguments::text FROM audit_events WHERE kind = 'call'")
    assert "sk-very-secret" not in stored and "cat_abc" not in stored and "[redacted]" in stored


async def test_a_write_has_its_effect_row_in_its_transaction_and_its_call_row(as_role: Open, book: Book) -> None:
    async with as_role(Role.SUPERVISOR) as supervisor:
        await supervisor.ok("send_directive", {"agent_id": "alpha", "text": "hello"})
    rows = await book.rows("SELECT kind, tool, role FROM audit_events ORDER BY audit_id")
    assert [(r["kind"], r["tool"], r["role"]) for r in rows] == [
        ("effect", "send_directive", "supervisor"),
        ("call", "send_directive", "supervisor"),
    ]


def _buy(symbol: str) -> dict[str, Any]:
    return {"symbol": symbol, "side": "buy", "quantity": "1", "order_type": "market"}


async def _resting_buy(trader: Tools, runtime: Runtime, symbol: str) -> dict[str, Any]:
    """A limit buy well under the market: accepted, working at the broker."""
    quote = await trader.ok("get_quote", {"symbol": symbol})
    limit = str(round(float(quote["bid"]) * 0.97, 2))
    stop = str(round(float(quote["bid"]) * 0.93, 2))
    decision = await trader.ok(
        "check_risk",
        {
            "symbol": symbol,
            "side": "buy",
            "quantity": "2",
            "order_type": "limit",
            "limit_price": limit,
            "stop_loss": stop,
        },
    )
    assert decision["approved"], decision["reasons"]
    placed = await trader.ok("execute_trade", {"approval_id": decision["approval_id"]})
    assert placed["status"] == "accepted", placed
    return placed


async def embedded_extra() -> str:
    """A tool the code embedding the server adds (as the benchmarks add a no-op)."""
    return "extra"


@pytest.mark.parametrize("role", list(Role))
async def test_a_tool_added_by_embedding_code_is_listed_and_callable_alike_for_every_role(
    settings: Settings, runtime: Runtime, role: Role
) -> None:
    server = build_server(settings, runtime=runtime, role=role)
    server.add_tool(embedded_extra)
    async with Client(server) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert listed == (REGISTERED & TOOLS_OF[role]) | {"embedded_extra"}
        assert not (await client.call_tool("embedded_extra", {})).is_error
        outside = sorted(REGISTERED - TOOLS_OF[role])[0]
        assert (await client.call_tool(outside, {})).is_error


# --- a call row written with the call's effect ----------------------------------------------------------------


async def test_check_risk_and_an_entrys_execute_trade_write_their_call_row_with_their_effect(
    as_role: Open, book: Book
) -> None:
    """The decision and the entry's booking each commit their call's row in their own transaction: one row per
    call, "ok", with a duration."""
    async with as_role(Role.TRADER) as trader:
        quote = await trader.ok("get_quote", {"symbol": "KO"})
        stop = str(round(float(quote["bid"]) * 0.95, 2))
        decision = await trader.ok("check_risk", {**_buy("KO"), "quantity": "3", "stop_loss": stop})
        assert decision["approved"], decision["reasons"]
        done = await trader.ok("execute_trade", {"approval_id": decision["approval_id"]})
        assert done["status"] == "filled", done
    # The effect rows of the decision and of the booking, and the transaction of each call row.
    rows = await book.rows(
        """SELECT c.tool, c.outcome, c.duration_ms, e.outcome AS effect
           FROM audit_events c LEFT JOIN audit_events e
             ON e.kind = 'effect' AND e.tool = c.tool AND e.xmin::text = c.xmin::text
           WHERE c.kind = 'call' AND c.tool IN ('check_risk', 'execute_trade') ORDER BY c.audit_id"""
    )
    coid = done["client_order_id"]
    assert [(r["tool"], r["outcome"], r["effect"]) for r in rows] == [
        ("check_risk", "ok", f"approved {decision['approval_id']}"),
        ("execute_trade", "ok", f"order {coid} filled, filled 3, 1 protective legs"),  # its stop
    ]
    assert all(r["duration_ms"] is not None and r["duration_ms"] >= 0 for r in rows)


async def test_a_call_that_fails_after_its_row_was_written_with_its_effect_is_recorded_as_failed(
    settings: Settings, runtime: Runtime, book: Book
) -> None:
    async def failing_after_its_effect() -> str:
        """A tool whose durable write took its call's row, and which then fails."""
        call = call_row_of("failing_after_its_effect")
        assert call is not None
        async with runtime.pool.acquire() as conn:
            call.written = await conn.fetchval(
                f"WITH called AS ({audit_store.call_sql(1, when='TRUE')}) SELECT audit_id FROM called",
                *audit_store.call_params(call.entry("ok"), 0),
            )
        raise ToolError("it broke after writing")

    server = build_server(settings, runtime=runtime)
    server.add_tool(failing_after_its_effect)
    async with Client(server) as client:
        assert (await client.call_tool("failing_after_its_effect", {})).is_error
    rows = await book.rows("SELECT outcome FROM audit_events WHERE kind = 'call' AND tool = 'failing_after_its_effect'")
    [outcome] = [r["outcome"] for r in rows]  # one row: the one written with the effect, corrected
    assert outcome.startswith("error: ") and outcome.endswith("it broke after writing")
