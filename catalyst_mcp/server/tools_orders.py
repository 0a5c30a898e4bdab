"""Order lifecycle tools: get_orders and cancel_order."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import CycleIdArg, SymbolArg, Toolkit, caller_of, hints, runtime_of
from catalyst_mcp.services import orders
from catalyst_mcp.store.records import OrderRecord


def order_out(o: OrderRecord) -> m.OrderOut:
    assert o.created_at is not None and o.updated_at is not None
    return m.OrderOut(
        order_id=o.order_id,
        role=o.role,
        parent_order_id=o.parent_order_id,
        client_order_id=o.client_order_id,
        broker_order_id=o.broker_order_id,
        cycle_id=o.cycle_id,
        symbol=o.symbol,
        side=o.side,
        quantity=o.quantity,
        order_type=o.order_type,
        limit_price=o.limit_price,
        stop_price=o.stop_price,
        stop_loss=o.stop_loss,
        take_profit=o.take_profit,
        status=o.status,
        filled_quantity=o.filled_quantity,
        avg_fill_price=o.avg_fill_price,
        reason=o.reject_reason,
        created_at=o.created_at,
        updated_at=o.updated_at,
        fills=[m.FillOut(fill_id=f.fill_id, side=f.side, quantity=f.quantity, price=f.price, at=f.at) for f in o.fills],
    )


def register(kit: Toolkit) -> None:
    @kit.tool(hints(True, False, True, True))
    async def get_orders(
        ctx: Context,
        status: orders.StatusFilter = "all",
        symbol: SymbolArg | None = None,
        cycle_id: CycleIdArg | None = None,
    ) -> m.OrdersOut:
        """Orders of this market as last recorded, newest first, with their fills. status: open (pending,
        accepted or partially filled), filled, cancelled, rejected or all; cycle_id: that cycle's orders."""
        found, truncated = await kit.plain(
            orders.get_orders(runtime_of(ctx), status=status, symbol=symbol, cycle_id=cycle_id)
        )
        return m.OrdersOut(orders=[order_out(o) for o in found], truncated=truncated)

    @kit.tool(hints(False, True, True, True))
    async def cancel_order(
        ctx: Context, order_id: Annotated[int, Field(ge=1, le=2**63 - 1, description="order_id from execute_trade")]
    ) -> m.CancelOut:
        """Cancel a working order at the broker and record its final state; fills that came first stay in the
        book. An order that already ended is returned unchanged with cancelled=false and the reason."""
        result = await kit.plain(orders.cancel_order(runtime_of(ctx), order_id, caller_of(ctx)))
        return m.CancelOut(order=order_out(result.order), cancelled=result.cancelled, reason=result.reason)
