"""The order path: check_risk (DECIDE → VALIDATE) and execute_trade (EXECUTE → MONITOR)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.domain.phases import Phase, PhaseStatus, monitor_detail, validate_detail
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    DESTRUCTIVE_IDEMPOTENT,
    READ_ONLY_RECORDING,
    CallArg,
    CycleIdArg,
    Price,
    Quantity,
    SymbolArg,
    tool,
)
from catalyst_mcp.services.execution import parse_approval_id


@tool(READ_ONLY_RECORDING, in_cycle=True)
async def check_risk(
    call: CallArg,
    symbol: SymbolArg,
    side: Side,
    quantity: Quantity,
    order_type: OrderType,
    limit_price: Price | None = None,
    stop_loss: Price | None = None,
    take_profit: Price | None = None,
    cycle_id: CycleIdArg | None = None,
) -> m.RiskOut:
    """Check an order against every risk rule. An approval (approval_id) is valid for one execute_trade
    until expires_at. Writes only the approval record."""
    call.refuse_in_scan()
    if order_type is OrderType.LIMIT and limit_price is None:
        raise InvalidInput("a limit order needs limit_price")
    if order_type is OrderType.MARKET and limit_price is not None:
        raise InvalidInput("a market order takes no limit_price")
    intent = OrderIntent(
        symbol=normalise_symbol(call.services.profile.market, symbol),
        side=side,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        stop_loss=stop_loss,
        take_profit=take_profit,
    )
    result = await call.services.approvals.check_risk(intent, call.cycle, call.caller)
    call.add(Phase.DECIDE, PhaseStatus.COMPLETED, f"{side.value} {quantity} {intent.symbol}")
    failed = [c.rule for c in result.decision.checks if not c.passed]
    call.add(Phase.VALIDATE, PhaseStatus.COMPLETED, validate_detail(result.decision.approved, failed))
    return mapping.risk_out(result)


@tool(DESTRUCTIVE_IDEMPOTENT, in_cycle=True)
async def execute_trade(
    call: CallArg, approval_id: Annotated[str, Field(max_length=64)], cycle_id: CycleIdArg | None = None
) -> m.ExecuteOut:
    """Send exactly the order approved by check_risk. Executing the same approval again returns the
    original result with replayed=true; it never creates a second order."""
    call.refuse_in_scan()
    parsed = parse_approval_id(approval_id)
    result = await call.services.execution.execute_trade(parsed, cycle_id, call.caller)
    out = mapping.execute_out(result, result.position, result.quote, result.protection)
    if out.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
        call.add(Phase.EXECUTE, PhaseStatus.FAILED, out.reason or out.status.value)
    else:
        call.add(Phase.EXECUTE, PhaseStatus.COMPLETED, f"order {out.client_order_id} {out.status.value}")
        if out.status is OrderStatus.FILLED:
            price = "?" if out.avg_fill_price is None else plain(out.avg_fill_price)
            detail = monitor_detail(plain(out.filled_quantity), out.symbol, price)
            call.add(Phase.MONITOR, PhaseStatus.COMPLETED, detail)
        else:
            call.add(Phase.MONITOR, PhaseStatus.IN_PROGRESS, f"order {out.status.value}: awaiting fill")
    return out


TOOLS = (check_risk, execute_trade)
