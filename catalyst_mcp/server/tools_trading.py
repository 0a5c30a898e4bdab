"""The order path: check_risk (DECIDE → VALIDATE), execute_trade (EXECUTE → MONITOR) and close_position (all
four, for an exit). An order that needs
confirmation (``services/execution.py``) is confirmed by asking the client's user through MCP elicitation when
the client can be asked — the SDK's ``Resolve``/``Elicit`` asks in either protocol era — and otherwise by the
one-time token of a refusal."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.elicitation import AcceptedElicitation, CancelledElicitation, DeclinedElicitation
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import CatalystError, InvalidInput
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.domain.phases import Phase, PhaseStatus, monitor_detail, validate_detail
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    DESTRUCTIVE,
    DESTRUCTIVE_IDEMPOTENT,
    READ_ONLY_RECORDING,
    Call,
    CallArg,
    Ctx,
    CycleIdArg,
    Price,
    Quantity,
    SymbolArg,
    tool,
)
from catalyst_mcp.services.execution import Consent, parse_approval_id

# The first protocol revision that carries a tool's questions inside its result (the client answers by
# calling again) rather than as a request of the server's own while the call runs.
_ASKS_IN_RESULT = "2026-07-28"


class OrderConfirmation(BaseModel):
    """The form the client's user fills in."""

    confirm: bool = Field(description="true sends the order, false drops it")


def _can_ask(ctx: Ctx) -> bool:
    """Whether the client declared form elicitation and this call can carry a question to it."""
    capabilities = ctx.client_capabilities
    form = capabilities.elicitation if capabilities is not None else None
    if form is None or (form.form is None and form.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, _ASKS_IN_RESULT):
        return True
    return ctx.request_context.session.can_send_request


async def ask_to_confirm(
    ctx: Ctx, call: CallArg, approval_id: str, confirmation: str | None
) -> Elicit[OrderConfirmation] | Consent:
    """The resolver that asks the client's user to confirm an order that needs it, when the client can be
    asked and no token was given; anything it cannot judge is left to execute_trade itself."""
    if confirmation is not None or not _can_ask(ctx):
        return Consent.NOT_ASKED
    try:
        question = await call.services.execution.question_for(parse_approval_id(approval_id))
    except CatalystError:
        return Consent.NOT_ASKED
    return Consent.NOT_ASKED if question is None else Elicit(question, OrderConfirmation)


Asked = AcceptedElicitation[Any] | DeclinedElicitation | CancelledElicitation


def _consent(asked: Asked) -> Consent:
    if not isinstance(asked, AcceptedElicitation):
        return Consent.REFUSED
    answer = asked.data
    if isinstance(answer, Consent):
        return answer
    return Consent.GIVEN if isinstance(answer, OrderConfirmation) and answer.confirm else Consent.REFUSED


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
    call: CallArg,
    asked: Annotated[Asked, Resolve(ask_to_confirm)],
    approval_id: Annotated[str, Field(max_length=64)],
    cycle_id: CycleIdArg | None = None,
    confirmation: Annotated[
        str | None, Field(max_length=64, description="the confirmation_token of this approval's latest refusal")
    ] = None,
) -> m.ExecuteOut:
    """Send exactly the order approved by check_risk. Executing the same approval again returns the
    original result with replayed=true; it never creates a second order. A large order (above the
    confirm_notional_above limit) and every live order is sent only once the user confirms it: the server asks
    through the client when it can, else refuses with a confirmation_token to pass back as confirmation."""
    call.refuse_in_scan()
    parsed = parse_approval_id(approval_id)
    result = await call.services.execution.execute_trade(
        parsed, cycle_id, call.caller, consent=_consent(asked), confirmation=confirmation
    )
    out = mapping.execute_out(result, result.position, result.quote, result.protection)
    _record_execution(call, out)
    return out


def _record_execution(call: Call, out: m.ExecuteOut) -> None:
    """The EXECUTE and MONITOR events of an execution's answer."""
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


@tool(DESTRUCTIVE, in_cycle=True)
async def close_position(
    call: CallArg,
    symbol: SymbolArg,
    reason: Annotated[str, Field(min_length=1, max_length=200, description="why the position is closed")],
    quantity: Annotated[Quantity | None, Field(description="the shares to close; all of them when omitted")] = None,
    cycle_id: CycleIdArg | None = None,
) -> m.CloseOut:
    """Close an open position, whole or in part, with a market order on the other side: check_risk then
    execute_trade, so every rule, the trading state and the serialised order path apply. Reduce-only: never more
    than the position; the protective legs of what remains are kept. A refusal sends nothing and says why."""
    call.refuse_in_scan()
    canonical = normalise_symbol(call.services.profile.market, symbol)
    closed = await call.services.closing.close(canonical, quantity, call.cycle, call.caller)
    risk = closed.risk
    call.add(Phase.DECIDE, PhaseStatus.COMPLETED, f"close {plain(closed.quantity)} {canonical}: {reason}")
    failed = [c.rule for c in risk.decision.checks if not c.passed]
    call.add(Phase.VALIDATE, PhaseStatus.COMPLETED, validate_detail(risk.decision.approved, failed))
    approval = mapping.risk_out(risk)
    if closed.execution is None:
        refusal = closed.refusal or "refused by check_risk"
        call.add(Phase.EXECUTE, PhaseStatus.FAILED, refusal)
        return m.CloseOut(
            status=OrderStatus.REJECTED,
            order_id=None,
            client_order_id=None,
            broker_order_id=None,
            symbol=canonical,
            side=closed.side,
            quantity=closed.quantity,
            filled_quantity=0,
            avg_fill_price=None,
            position=None,
            replayed=False,
            reason=refusal,
            approval=approval,
        )
    result = closed.execution
    out = mapping.execute_out(result, result.position, result.quote, result.protection)
    _record_execution(call, out)
    return m.CloseOut(**dict(out), approval=approval)


TOOLS = (check_risk, execute_trade, close_position)
