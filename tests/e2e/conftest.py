"""End-to-end fixtures: the real MCP client, in process, in both protocol eras, over a fresh database.

Test modules here set ``pytestmark = pytest.mark.anyio`` themselves: the root conftest adds the marker only
after collection, and anyio then re-creates each test item with the backend as its sole parameter, which
drops the ``protocol_mode`` parametrisation below.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.domain.enums import OrderRole
from catalyst_mcp.domain.records import ApprovalRecord, OrderRecord
from catalyst_mcp.store import orders
from catalyst_mcp.store.audit import AuditEntry

# Every table a tool may write a business row to (the audit trail is deliberately not listed).
BUSINESS_TABLES = (
    "cycles",
    "cycle_events",
    "risk_decisions",
    "orders",
    "fills",
    "positions",
    "decisions",
    "sync_runs",
    "scans",
    "monitor_checks",
    "sim.orders",
    "sim.fills",
    "sim.positions",
)


@pytest.fixture(params=["auto", "legacy"], ids=["protocol-2026", "protocol-legacy"])
def protocol_mode(request: pytest.FixtureRequest) -> str:
    """`auto` speaks 2026-07-28 to an in-process server; `legacy` does the 2025-11-25 initialize handshake."""
    return str(request.param)


@pytest.fixture
async def client(server: Any, protocol_mode: str) -> AsyncIterator[Client]:
    async with Client(server, mode=protocol_mode) as c:
        yield c


class Tools:
    """Thin assertions around ``Client.call_tool``: a call either succeeds with structured content or fails
    with a one-line tool error."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def ok(self, tool: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        result = await self.client.call_tool(tool, dict(args or {}))
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert not result.is_error, f"{tool}({args}) failed: {text}"
        assert isinstance(result.structured_content, dict), f"{tool} returned no structured content"
        return result.structured_content

    async def error(self, tool: str, args: Mapping[str, Any] | None = None) -> str:
        result = await self.client.call_tool(tool, dict(args or {}))
        assert result.is_error, f"{tool}({args}) succeeded, expected a tool error: {result.structured_content}"
        assert len(result.content) == 1
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.strip(), "a tool error must say what is wrong"
        assert "\n" not in text, f"a tool error must be one line, got {text!r}"
        assert "Traceback" not in text and 'File "' not in text, f"a traceback reached the client: {text!r}"
        return text

    async def start_cycle(self, **args: Any) -> str:
        started = await self.ok("start_cycle", args)
        cycle_id = started["cycle_id"]
        assert isinstance(cycle_id, str)
        return cycle_id

    async def stop_below_bid(self, symbol: str, share: str = "0.95") -> str:
        """A valid stop loss for a long entry: a fraction of the current bid."""
        quote = await self.ok("get_quote", {"symbol": symbol})
        return str((Decimal(quote["bid"]) * Decimal(share)).quantize(Decimal("0.01")))

    async def approve(
        self, cycle_id: str | None, symbol: str = "AAPL", quantity: str = "10", **extra: Any
    ) -> dict[str, Any]:
        """An approved market buy with a sensible stop loss."""
        args: dict[str, Any] = {
            "symbol": symbol,
            "side": "buy",
            "quantity": quantity,
            "order_type": "market",
            "stop_loss": await self.stop_below_bid(symbol),
            **extra,
        }
        if cycle_id is not None:
            args["cycle_id"] = cycle_id
        decision = await self.ok("check_risk", args)
        assert decision["approved"] is True, decision["reasons"]
        return decision

    async def buy(self, cycle_id: str | None, symbol: str = "AAPL", quantity: str = "10") -> dict[str, Any]:
        """Approve and execute a market buy; it must fill."""
        decision = await self.approve(cycle_id, symbol, quantity)
        args = {"approval_id": decision["approval_id"]}
        if cycle_id is not None:
            args["cycle_id"] = cycle_id
        result = await self.ok("execute_trade", args)
        assert result["status"] == "filled", result
        return result


@pytest.fixture
def tools(client: Client) -> Tools:
    return Tools(client)


class Book:
    """Direct reads of the database, to check what the tools wrote (never to write)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def counts(self) -> dict[str, int]:
        async with self.pool.acquire() as conn:
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in BUSINESS_TABLES}

    async def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def value(self, sql: str, *args: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def open_positions(self) -> dict[str, Decimal]:
        rows = await self.rows("SELECT symbol, quantity FROM positions WHERE status = 'open'")
        return {r["symbol"]: r["quantity"] for r in rows}

    async def broker_positions(self) -> dict[str, Decimal]:
        rows = await self.rows("SELECT symbol, quantity FROM sim.positions WHERE quantity <> 0")
        return {r["symbol"]: r["quantity"] for r in rows}


@pytest.fixture
def book(runtime: Runtime) -> Book:
    return Book(runtime.pool)


async def record_unsent(runtime: Runtime, approval_id: str) -> tuple[ApprovalRecord, OrderRecord]:
    """The approval's order recorded as pending, as if execute_trade stopped between recording and sending."""
    async with runtime.pool.acquire() as conn:
        found = await orders.execution_of(conn, uuid.UUID(approval_id), "nobody", runtime.profile.market)
        approval = found.approval
        assert approval is not None
        order = await orders.record_intent(
            conn,
            client_order_id=f"cat-{approval.approval_id.hex}",
            approval=approval,
            role=OrderRole.ENTRY,
            broker="sim",
            at=runtime.clock.now(),
            audited=AuditEntry("test", "test", "execute_trade", {}, "recorded", None),
        )
    return approval, order
