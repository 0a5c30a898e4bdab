"""The floor of an order in this design: this server over stdio (every tool, middleware and call row as
``catalyst-mcp serve`` has them) plus two tools that do only what no check_risk + execute_trade can do without,
and nothing else: no rules, no reservations, no audit rows of their own, no position or protection bookkeeping.

- ``floor_check``: hold the market's lane reading the risk snapshot (one statement), commit one row durably (an
  approval a client is told of must survive a crash of the database).
- ``floor_execute``: hold the lane reading the snapshot, commit the intent durably before anything is sent,
  send the order through the broker adapter, commit the answer durably.

Each call's audit row is written by its last durable statement, as check_risk's is by its decision.

``bench/peer.sh`` runs it through the peer harness next to ``check_risk`` + ``execute_trade``, so that the
order_ratio target can be read against the least any implementation of this design costs on the same run.
Settings come from the environment, as for ``catalyst-mcp serve``.

    .venv/bin/python bench/floor_server.py
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.config import load_settings
from catalyst_mcp.domain.enums import OrderType, Side
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.server.app import build_server
from catalyst_mcp.server.stdio import run_stdio
from catalyst_mcp.server.toolkit import Serving
from catalyst_mcp.services.audit import call_row_of
from catalyst_mcp.store import audit
from catalyst_mcp.store.book_snapshot import snapshot_query
from catalyst_mcp.store.db import Conn

TABLE = "CREATE TABLE IF NOT EXISTS bench_floor (at timestamptz, payload jsonb)"
INSERT = "INSERT INTO bench_floor (at, payload) VALUES (now(), $1)"
# The last durable row of a call also writes the call's audit row, as check_risk's decision does.
INSERT_WITH_CALL = f"""WITH called AS ({audit.call_sql(2, when="$2 IS NOT NULL")})
INSERT INTO bench_floor (at, payload) VALUES (now(), $1) RETURNING (SELECT audit_id FROM called)"""
# About the size of an approval's row: the intent, the account and quote it was judged on, a check per rule.
PAYLOAD = {"checks": [{"rule": f"rule_{n}", "passed": True, "limit": "1000", "actual": "10"} for n in range(23)]}


class Approved(BaseModel):
    approval_id: str


class Sent(BaseModel):
    status: str


def with_floor(server: MCPServer[Serving], rt: Runtime) -> MCPServer[Serving]:
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)

    async def snapshot(symbol: str) -> tuple[str, tuple[object, ...]]:
        now = rt.clock.now()
        return snapshot_query(
            rt.profile.market, now=now, day_start=now, trading_day=now.date(), recent_since=now, symbol=symbol
        )

    async def last_row(conn: Conn, tool: str, payload: Mapping[str, object]) -> None:
        """``payload``'s row, with the call's audit row when this task serves that call."""
        call = call_row_of(tool)
        params = audit.call_params(None, None) if call is None else audit.call_params(call.entry("ok"), 0)
        written = await conn.fetchval(INSERT_WITH_CALL, payload, *params)
        if call is not None:
            call.written = written

    async def floor_check(symbol: str, side: Side, quantity: Decimal, stop_loss: Decimal) -> Approved:
        """The least a check_risk does: a consistent read under the lane, a durable approval (and its call's
        audit row)."""
        async with rt.lane.hold_reading(lambda: snapshot(symbol)) as (conn, _):
            intent = [symbol, side.value, str(quantity), str(stop_loss)]
            await last_row(conn, "floor_check", {**PAYLOAD, "intent": intent})
        return Approved(approval_id=str(uuid.uuid4()))

    async def floor_execute(approval_id: str) -> Sent:
        """The least an execute_trade does: a consistent read under the lane, a durable intent, the submit, a
        durable answer."""
        intent = OrderIntent("AAPL", Side.BUY, Decimal(1), OrderType.MARKET, None, Decimal(185), None)
        async with rt.lane.hold_reading(lambda: snapshot(intent.symbol)) as (conn, _):
            await conn.execute(INSERT, {"intent": approval_id})
            answer = await rt.broker.submit_order(intent, f"floor-{uuid.UUID(approval_id).hex}")
            answered = {"answer": answer.status.value, "filled": str(answer.filled_quantity)}
            await last_row(conn, "floor_execute", answered)
        return Sent(status=answer.status.value)

    server.add_tool(floor_check, annotations=writes, structured_output=True)
    server.add_tool(floor_execute, annotations=writes, structured_output=True)
    return server


async def main() -> None:
    settings = load_settings()
    async with open_runtime(settings) as rt:
        await rt.pool.execute(TABLE)
        await run_stdio(with_floor(build_server(settings, runtime=rt), rt))


if __name__ == "__main__":
    anyio.run(main)
