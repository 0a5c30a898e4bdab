"""The order requests this adapter sends to Alpaca, and the protective legs Alpaca must confirm for them.

An approved intent goes out as a day order of whole shares: simple, one-triggers-other (one exit leg) or a
bracket (both). The protection of a position held now goes out good-till-cancelled on the exit side: one-
cancels-other when it has both a stop and a take profit, else a lone stop or limit order. Prices leave on the
tick, rounded the safe way for their side, and become the SDK's floats only through `alpaca_mapping`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from catalyst_mcp.brokers.alpaca_mapping import dec, wire_number, wire_price, wire_value
from catalyst_mcp.domain.enums import OrderType, Side
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import OrderIntent


@dataclass(frozen=True, slots=True)
class LegSpec:
    """A protective order as sent: 'limit' (take profit) or 'stop' (stop loss), at its wire price."""

    kind: Literal["limit", "stop"]
    price: Decimal


@dataclass(frozen=True, slots=True)
class WireOrder:
    """What is sent: the SDK request, its class, the legs Alpaca must report under the order, and (for a
    one-cancels-other group) what the order itself must be."""

    request: OrderRequest
    order_class: OrderClass
    legs: frozenset[LegSpec]
    head: LegSpec | None = None


def opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def _sdk_side(side: Side) -> OrderSide:
    return OrderSide.BUY if side is Side.BUY else OrderSide.SELL


def _whole(quantity: Decimal) -> float:
    if not quantity.is_finite() or quantity <= 0 or quantity != quantity.to_integral_value():
        raise InvalidInput(f"Alpaca orders here are whole shares, got {quantity}")
    return wire_number(quantity)


def wire_order(intent: OrderIntent, client_order_id: str) -> WireOrder:
    """The SDK request for `intent`: a bracket when it carries both exits, one-triggers-other with one,
    a simple order with none. The entry is a day order of whole shares."""
    exit_side = opposite(intent.side)
    legs: set[LegSpec] = set()
    fields: dict[str, Any] = {
        "symbol": intent.symbol,
        "qty": _whole(intent.quantity),
        "side": _sdk_side(intent.side),
        "time_in_force": TimeInForce.DAY,
        "client_order_id": client_order_id,
    }
    if intent.take_profit is not None:
        price = wire_price(intent.take_profit, exit_side)
        fields["take_profit"] = TakeProfitRequest(limit_price=wire_number(price))
        legs.add(LegSpec("limit", price))
    if intent.stop_loss is not None:
        # Rounded like an exit order: for a long, the stop moves up (tighter, never wider than approved).
        price = wire_price(intent.stop_loss, exit_side)
        fields["stop_loss"] = StopLossRequest(stop_price=wire_number(price))
        legs.add(LegSpec("stop", price))
    order_class = OrderClass.BRACKET if len(legs) == 2 else OrderClass.OTO if legs else OrderClass.SIMPLE
    if legs:
        fields["order_class"] = order_class
    request: OrderRequest
    if intent.order_type is OrderType.LIMIT:
        if intent.limit_price is None:
            raise InvalidInput("a limit order needs a limit price")
        limit = wire_number(wire_price(intent.limit_price, intent.side))
        request = LimitOrderRequest(limit_price=limit, **fields)
    else:
        request = MarketOrderRequest(**fields)
    return WireOrder(request, order_class, frozenset(legs))


def protect_order(
    symbol: str,
    side: Side,
    quantity: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    client_order_id: str,
) -> WireOrder:
    """Protection for `quantity` shares held now, on the exit `side`, good till cancelled: both prices make
    one one-cancels-other order (a limit at the take profit with a stop leg), one price a lone stop or limit.
    Both prices round like the exit order they are: never a worse take profit, never a wider stop."""
    fields: dict[str, Any] = {
        "symbol": symbol,
        "qty": _whole(quantity),
        "side": _sdk_side(side),
        "time_in_force": TimeInForce.GTC,
        "client_order_id": client_order_id,
    }
    stop = None if stop_loss is None else wire_price(stop_loss, side)
    target = None if take_profit is None else wire_price(take_profit, side)
    if stop is not None and target is not None:
        if (target <= stop) if side is Side.SELL else (target >= stop):
            raise InvalidInput(f"the take profit {target} must be beyond the stop loss {stop} for a {side.value}")
        # Alpaca's one-cancels-other: a limit order whose price is the take profit, with one stop leg.
        request: OrderRequest = LimitOrderRequest(
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=wire_number(target)),
            stop_loss=StopLossRequest(stop_price=wire_number(stop)),
            **fields,
        )
        return WireOrder(request, OrderClass.OCO, frozenset({LegSpec("stop", stop)}), LegSpec("limit", target))
    if stop is not None:
        return WireOrder(StopOrderRequest(stop_price=wire_number(stop), **fields), OrderClass.SIMPLE, frozenset())
    if target is not None:
        request = LimitOrderRequest(limit_price=wire_number(target), **fields)
        return WireOrder(request, OrderClass.SIMPLE, frozenset())
    raise InvalidInput("protection needs a stop loss, a take profit or both")


def _spec(order: Order) -> LegSpec | None:
    kind = wire_value(order.type or order.order_type)
    price = order.limit_price if kind == "limit" else order.stop_price if kind == "stop" else None
    if price is None:
        return None
    return LegSpec("limit" if kind == "limit" else "stop", dec(price))


def accepted_legs(order: Order) -> frozenset[LegSpec]:
    """The protective legs Alpaca reports under `order`, as (kind, price)."""
    return frozenset(spec for spec in (_spec(leg) for leg in order.legs or ()) if spec is not None)


def confirmed(order: Order, sent: WireOrder) -> bool:
    """True when Alpaca's answer carries the protection that was sent (Alpaca ignores legs it does not take)."""
    if sent.head is not None and (_spec(order) != sent.head or wire_value(order.order_class) != "oco"):
        return False
    return not sent.legs or accepted_legs(order) == sent.legs
