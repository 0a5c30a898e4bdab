"""Alpaca's wire values and the domain, in one place: strings to Decimal and back (the SDK's floats only
through `wire_number`), prices on the tick Alpaca accepts, orders with their legs and cumulative fills,
statuses and sides to the domain enums, the market clock, and the SDK's exceptions to the domain error
taxonomy. Pure functions; imported only when the Alpaca broker is chosen (`alpaca_orders` builds the order
requests from these)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final

from alpaca.common.exceptions import APIError
from alpaca.trading.models import Clock, Order, Position, TradeAccount
from pydantic import BaseModel, ConfigDict, ValidationError
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import RequestException, Timeout

from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, Fill
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
# How long a clock answer whose transition had already passed when it was read is trusted.
CLOCK_GRACE: Final = timedelta(seconds=5)


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
    rounded = US_PROFILE.round_price(price, side)
    if rounded <= 0:
        raise InvalidInput(f"price {price} rounds to zero on the tick")
    return rounded


def wire_number(value: Decimal) -> float:
    """A Decimal for the SDK's float fields; exact for prices on the tick and whole quantities."""
    result = float(value)
    if dec(result) != value:
        raise InvalidInput(f"{value} cannot be sent exactly")
    return result


# --- orders -----------------------------------------------------------------------------------------------


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


def broker_order(order: Order, fills: Iterable[Fill] = (), parent_id: str | None = None) -> BrokerOrder:
    """The domain view of an Alpaca order: its cumulative `filled_qty` and `filled_avg_price` as they are
    (the book moves by these), the individual `fills` listed for it, and its protective legs (from a nested
    answer), each with this order as its parent. `parent_id` is the order's own parent, when it is a leg."""
    order_id = str(order.id)
    filled = quantity(order.filled_qty or 0)
    avg = dec_or_none(order.filled_avg_price)
    fills = tuple(fills)
    own = tuple(sorted((f for f in fills if f.broker_order_id == order_id), key=lambda f: (f.at, f.fill_id)))
    return BrokerOrder(
        broker_order_id=order_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol or "",
        side=side_of(wire_value(order.side)),
        quantity=quantity(order.qty or 0),
        order_type=_TYPE.get(wire_value(order.type or order.order_type), OrderType.MARKET),
        limit_price=dec_or_none(order.limit_price),
        status=order_status(wire_value(order.status), filled),
        filled_quantity=filled,
        avg_fill_price=avg if filled > 0 and avg is not None and avg > 0 else None,  # "0" until Alpaca knows
        submitted_at=order.submitted_at,
        fills=own,
        stop_price=dec_or_none(order.stop_price),
        parent_id=parent_id,
        legs=tuple(broker_order(leg, fills, order_id) for leg in order.legs or ()),
    )


def partially_filled(order: Order) -> bool:
    """True when some but not all of `order` filled: only then are its individual fills worth a request."""
    filled = dec_or_none(order.filled_qty) or Decimal(0)
    return 0 < filled < (dec_or_none(order.qty) or Decimal(0))


def with_legs(order: Order) -> list[Order]:
    """`order` and its legs (of a nested answer), depth first."""
    return [order, *(o for leg in order.legs or () for o in with_legs(leg))]


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
class MarketClock:
    """Alpaca's /v2/clock as read at `read_at` (the injected clock): open or not until the next transition."""

    is_open: bool
    next_open: datetime
    next_close: datetime
    read_at: datetime

    @property
    def changes_at(self) -> datetime:
        return self.next_close if self.is_open else self.next_open

    def holds_at(self, now: datetime) -> bool:
        """True while the answer still stands: from its reading until the next transition. A transition that
        had already passed when it was read (clocks apart) holds it for a short grace, not for one call."""
        until = self.changes_at if self.changes_at > self.read_at else self.read_at + CLOCK_GRACE
        return self.read_at <= now < until


def market_clock(raw: Clock, read_at: datetime) -> MarketClock:
    tz = US_PROFILE.timezone

    def aware(at: datetime) -> datetime:
        return at if at.utcoffset() is not None else at.replace(tzinfo=tz)

    return MarketClock(bool(raw.is_open), aware(raw.next_open), aware(raw.next_close), read_at)


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
