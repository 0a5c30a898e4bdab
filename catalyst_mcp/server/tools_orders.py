"""Order lifecycle tools: get_orders and cancel_order."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import DESTRUCTIVE_IDEMPOTENT, READ_ONLY, CallArg, CycleIdArg, SymbolArg, tool
from catalyst_mcp.services.orders import StatusFilter


@tool(READ_ONLY)
async def get_orders(
    call: CallArg,
    status: StatusFilter = "all",
    symbol: SymbolArg | None = None,
    cycle_id: CycleIdArg | None = None,
) -> m.OrdersOut:
    """Orders of this market as last recorded, newest first, with their fills. status: open (pending,
    accepted or partially filled), filled, cancelled, rejected or all; cycle_id: that cycle's orders."""
    found, truncated = await call.services.orders.get_orders(status=status, symbol=symbol, cycle_id=cycle_id)
    return m.OrdersOut(orders=[mapping.order_out(o) for o in found], truncated=truncated)


@tool(DESTRUCTIVE_IDEMPOTENT)
async def cancel_order(
    call: CallArg,
    order_id: Annotated[int, Field(ge=1, le=2**63 - 1, description="order_id from execute_trade")],
) -> m.CancelOut:
    """Cancel a working order at the broker and record its final state; fills that came first stay in the
    book. An order that already ended is returned unchanged with cancelled=false and the reason."""
    result = await call.services.orders.cancel_order(order_id, call.caller)
    return m.CancelOut(order=mapping.order_out(result.order), cancelled=result.cancelled, reason=result.reason)


TOOLS = (get_orders, cancel_order)
