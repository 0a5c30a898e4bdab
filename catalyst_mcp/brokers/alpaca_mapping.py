"""Alpaca's wire values and the domain, in one place: strings to Decimal and back, prices on the tick
Alpaca accepts, statuses and sides to the domain enums, order requests with their exit legs, and the SDK's
exceptions to the domain error taxonomy. Pure functions; imported only when the Alpaca broker is chosen."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final, Literal

from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.models import Order, Position, TradeAccount
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)
from pydantic import BaseModel, ConfigDict, ValidationError
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import RequestException, Timeout

from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, Fill, OrderIntent
from catalyst_mcp.markets.profiles import US_PROFILE

# Alpaca's order statuses that are still working at the broker (they may fill or be cancelled).
_WORKING: Final = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "accepted_for_bidding",
        "held",
        "calculated",
        "pending_replace",
        "pending_review",
        "pending_cancel",
        "done_for_day",
        "stopped",
        "suspended",
    }
)
_CLOSED: Final = {"filled": OrderStatus.FILLED, "rejected": OrderStatus.REJECTED}
_ENDED_UNFILLED: Final = frozenset({"canceled", "expired", "replaced"})
# Order types whose execution is a market order once triggered, or a limit order.
_TYPE: Final = {
    "market": OrderType.MARKET,
    "stop": OrderType.MARKET,
    "trailing_stop": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop_limit": OrderType.LIMIT,
}
# Alpaca answers 403 with this code when an order exceeds buying power or the quantity available.
INSUFFICIENT_CODE: Final = 40310000
_MAX_MESSAGE: Final = 200


# --- numbers ----------------------------------------------------------------------------------------------


def dec(value: object) -> Decimal:
    """Alpaca's number (a string, or a JSON number the SDK made a float) as an exact Decimal."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a number: {value!r}")
    try:
        # str() of a float is its shortest round-trip form: 190.12 stays 190.12.
        result = Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def dec_or_none(value: object) -> Decimal | None:
    return None if value is None or value == "" else dec(value)


def quantity(value: object) -> Decimal:
    """A quantity in plain form: whole numbers without a fraction ("10.0" -> 10), others without trailing zeros."""
    result = dec(value)
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


def wire_price(price: Decimal, side: Side) -> Decimal:
    """A price on the tick Alpaca accepts (whole cents at or above $1, 1/100 cent below), rounded so it is
    never worse for an order on `side`: buys round down, sells round up. Sub-penny never leaves here."""
    if not price.is_finite() or price <= 0:
        raise InvalidInput(f"price must be positive, got {price}")
    rounded = US_PROFILE.round_to_tick(price, ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)
    if rounded <= 0:
        raise InvalidInput(f"price {price} rounds to zero on the tick")
    return rounded


def wire_number(value: Decimal) -> float:
    """A Decimal for the SDK's float fields; exact for prices on the tick and whole quantities."""
    result = float(value)
    if dec(result) != value:
        raise InvalidInput(f"{value} cannot be sent exactly")
    return result


def on_tick(price: Decimal) -> bool:
    return price == US_PROFILE.round_to_tick(price)


# --- orders -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegSpec:
    """An exit leg as sent: 'limit' (take profit) or 'stop' (stop loss), at its wire price."""

    kind: Literal["limit", "stop"]
    price: Decimal


@dataclass(frozen=True, slots=True)
class WireOrder:
    """What is sent for an intent: the SDK request plus the legs Alpaca must confirm."""

    request: OrderRequest
    order_class: OrderClass
    legs: frozenset[LegSpec]


def opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def wire_order(intent: OrderIntent, client_order_id: str) -> WireOrder:
    """The SDK request for `intent`: a bracket when it carries both exits, one-triggers-other with one,
    a simple order with none. The entry is a day order of whole shares."""
    if intent.quantity != intent.quantity.to_integral_value() or intent.quantity <= 0:
        raise InvalidInput(f"Alpaca orders here are whole shares, got {intent.quantity}")
    exit_side = opposite(intent.side)
    legs: set[LegSpec] = set()
    fields: dict[str, Any] = {
        "symbol": intent.symbol,
        "qty": wire_number(intent.quantity),
        "side": OrderSide.BUY if intent.side is Side.BUY else OrderSide.SELL,
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


def accepted_legs(order: Order) -> frozenset[LegSpec]:
    """The exit legs Alpaca reports for `order`, as (kind, price)."""
    found: set[LegSpec] = set()
    for leg in order.legs or ():
        kind = wire_value(leg.type or leg.order_type)
        price = leg.limit_price if kind == "limit" else leg.stop_price
        if kind in ("limit", "stop") and price is not None:
            found.add(LegSpec("limit" if kind == "limit" else "stop", dec(price)))
    return frozenset(found)


def order_status(status: str, filled_qty: Decimal) -> OrderStatus:
    """Alpaca's status as the domain's: working orders with a fill are partially filled."""
    if status in _CLOSED:
        return _CLOSED[status]
    if status in _ENDED_UNFILLED:
        return OrderStatus.CANCELLED
    if status == "partially_filled" or (status in _WORKING and filled_qty > 0):
        return OrderStatus.PARTIALLY_FILLED
    return OrderStatus.ACCEPTED  # working, or a status this adapter does not know: keep looking at it


def is_final(status: str) -> bool:
    """True when an Alpaca order can no longer change (filled, cancelled, expired, rejected, replaced)."""
    return status in _CLOSED or status in _ENDED_UNFILLED


def side_of(value: str) -> Side:
    if value == "buy":
        return Side.BUY
    if value in ("sell", "sell_short"):
        return Side.SELL
    raise ValueError(f"unknown side {value!r}")


def wire_value(member: object) -> str:
    return str(getattr(member, "value", member) or "")


def broker_order(order: Order, fills: Iterable[Fill]) -> BrokerOrder:
    """The domain view of an Alpaca order, with the fills known for it. Its filled quantity is always the
    sum of those fills, since the book moves by fills: when the account activities lag the order (fewer
    shares than its `filled_qty`), it stays open, so it is looked at again rather than booked short."""
    own = tuple(sorted((f for f in fills if f.broker_order_id == str(order.id)), key=lambda f: (f.at, f.fill_id)))
    ordered = quantity(order.qty or 0)
    reported = quantity(order.filled_qty or 0)
    known = sum((f.quantity for f in own), Decimal(0))
    status = order_status(wire_value(order.status), reported)
    avg = dec_or_none(order.filled_avg_price)
    if known != reported:
        if known >= ordered > 0:
            status = OrderStatus.FILLED
        elif known < reported:
            status = OrderStatus.PARTIALLY_FILLED if known > 0 else OrderStatus.ACCEPTED
        avg = sum((f.quantity * f.price for f in own), Decimal(0)) / known if known else None
    return BrokerOrder(
        broker_order_id=str(order.id),
        client_order_id=order.client_order_id,
        symbol=order.symbol or "",
        side=side_of(wire_value(order.side)),
        quantity=ordered,
        order_type=_TYPE.get(wire_value(order.type or order.order_type), OrderType.MARKET),
        limit_price=dec_or_none(order.limit_price),
        status=status,
        filled_quantity=known,
        avg_fill_price=avg if known > 0 else None,
        submitted_at=order.submitted_at,
        fills=own,
    )


class FillActivity(BaseModel):
    """One FILL entry of /v2/account/activities (money and quantities arrive as strings)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    transaction_time: datetime

    def to_fill(self) -> Fill:
        return Fill(
            self.id, self.order_id, self.symbol, side_of(self.side), self.qty, self.price, self.transaction_time
        )


def fills_from_activities(raw: object) -> list[Fill]:
    """Parse a page of FILL activities; anything that is not a list of fills is a malformed answer."""
    if not isinstance(raw, list):
        raise ValueError("account activities: expected a list")
    return [FillActivity.model_validate(item).to_fill() for item in raw]


# --- account and positions ----------------------------------------------------------------------------------


def account(raw: TradeAccount) -> Account:
    return Account(
        cash=dec(raw.cash),
        equity=dec(raw.equity),
        buying_power=dec(raw.buying_power),
        currency=raw.currency or "USD",
        last_equity=dec_or_none(raw.last_equity),
    )


def position(raw: Position) -> BrokerPosition:
    qty = abs(quantity(raw.qty))
    signed = -qty if wire_value(raw.side) == "short" else qty
    return BrokerPosition(symbol=raw.symbol, quantity=signed, avg_entry_price=dec(raw.avg_entry_price))


@dataclass(frozen=True, slots=True)
class TradingDay:
    """One market day from /v2/calendar: aware open and close in New York time."""

    day: date
    open: datetime
    close: datetime


def trading_day(day: date, open_: datetime, close: datetime) -> TradingDay:
    tz = US_PROFILE.timezone
    return TradingDay(day, open_.replace(tzinfo=tz), close.replace(tzinfo=tz))


@dataclass(frozen=True, slots=True)
class AssetInfo:
    symbol: str
    tradable: bool
    shortable: bool
    fractionable: bool


# --- errors -------------------------------------------------------------------------------------------------


def _one_line(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _api_message(exc: APIError) -> tuple[int | None, str]:
    """Alpaca's error code and message from the body ({"code": ..., "message": ...}), else the raw text."""
    text = str(exc)
    try:
        body = json.loads(text)
    except ValueError:
        return None, text
    if isinstance(body, Mapping):
        code = body.get("code")
        return (code if isinstance(code, int) else None), str(body.get("message", text))
    return None, text


def translate(exc: BaseException, secrets: Iterable[str] = (), *, timeout: float | None = None) -> CatalystError:
    """The domain error for an SDK or transport failure: 401/403 need an operator (except a refused order),
    400/422 and other 4xx are rejections with Alpaca's message, 429/5xx/timeouts/dropped connections are
    temporary. Messages are one line and never carry the credentials."""
    secrets = tuple(secrets)
    if isinstance(exc, CatalystError):
        return exc
    if isinstance(exc, APIError):
        status = exc.status_code
        code, message = _api_message(exc)
        message = _one_line(message, secrets)
        if status == 401:
            return OperatorNeeded(
                "Alpaca refused the API keys (401): check APCA_API_KEY_ID and APCA_API_SECRET_KEY "
                "and that they belong to the paper or live endpoint in use"
            )
        if status == 403 and code == INSUFFICIENT_CODE:
            return BrokerRejected(f"Alpaca rejected the order: {message}")
        if status == 403:
            return OperatorNeeded(f"Alpaca forbids this request (403): {message}")
        if status == 429:
            return TemporaryFailure("Alpaca's rate limit was reached (429); retry shortly")
        if status is not None and 400 <= status < 500:
            return BrokerRejected(f"Alpaca rejected the request ({status}): {message}")
        return TemporaryFailure(f"Alpaca failed ({status or 'no status'}): {message}")
    if isinstance(exc, Timeout):
        limit = f" within {timeout:g} s" if timeout is not None else ""
        return TemporaryFailure(f"Alpaca did not answer{limit}")
    if isinstance(exc, RequestsConnectionError):
        return TemporaryFailure("the connection to Alpaca failed")
    if isinstance(exc, RequestException):
        return TemporaryFailure(f"the request to Alpaca failed ({type(exc).__name__})")
    if isinstance(exc, ValidationError | ValueError):
        return TemporaryFailure(f"Alpaca sent an answer this adapter cannot read ({type(exc).__name__})")
    return TemporaryFailure(f"the call to Alpaca failed ({type(exc).__name__})")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error, if it has one."""
    return exc.status_code if isinstance(exc, APIError) else None
