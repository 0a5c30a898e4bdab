"""futu-api's values and the domain, in one place: codes (``HK.00700`` ↔ ``00700``), numbers (the SDK's
floats, numpy scalars and ``'N/A'``) to Decimal, every order status from -1 (Unknown) to 24 (FillCancelled),
orders, positions, funds and snapshots to the domain's types, board lots and price spreads checked before an
order leaves, and the SDK's error strings to the domain error taxonomy. Pure: it never imports the SDK (its
DataFrames arrive here as rows, ``dict``s), so it loads and is tested without it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final
from zoneinfo import ZoneInfo

from catalyst_mcp.domain.decimals import plain, round_to
from catalyst_mcp.domain.enums import Market, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, CatalystError, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, Quote
from catalyst_mcp.markets.symbols import canonical_symbol
from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.scanner import ScanRow

Row = Mapping[str, Any]
HKT: Final = ZoneInfo("Asia/Hong_Kong")
REMARK_BYTES: Final = 64  # the longest remark Futu keeps with an order
_MAX_MESSAGE: Final = 200

# Every Trd_Common.OrderStatus, by the name the SDK gives it ("N/A" is -1, Unknown, and any value it does not
# know). Orders that may still trade map to ACCEPTED/PARTIALLY_FILLED (looked at again), ended ones to their end.
STATUSES: Final[Mapping[str, OrderStatus]] = {
    "N/A": OrderStatus.ACCEPTED,  # -1 Unknown: not known to be over
    "UNSUBMITTED": OrderStatus.ACCEPTED,  # 0
    "WAITING_SUBMIT": OrderStatus.ACCEPTED,  # 1
    "SUBMITTING": OrderStatus.ACCEPTED,  # 2
    "SUBMIT_FAILED": OrderStatus.REJECTED,  # 3
    "TIMEOUT": OrderStatus.ACCEPTED,  # 4: the result is unknown; it may yet trade
    "SUBMITTED": OrderStatus.ACCEPTED,  # 5
    "FILLED_PART": OrderStatus.PARTIALLY_FILLED,  # 10
    "FILLED_ALL": OrderStatus.FILLED,  # 11
    "CANCELLING_PART": OrderStatus.PARTIALLY_FILLED,  # 12: still working until the cancel lands
    "CANCELLING_ALL": OrderStatus.ACCEPTED,  # 13
    "CANCELLED_PART": OrderStatus.CANCELLED,  # 14: its fill stands
    "CANCELLED_ALL": OrderStatus.CANCELLED,  # 15
    "FAILED": OrderStatus.REJECTED,  # 21
    "DISABLED": OrderStatus.CANCELLED,  # 22: deactivated; it no longer works at the exchange
    "DELETED": OrderStatus.CANCELLED,  # 23
    "FILL_CANCELLED": OrderStatus.CANCELLED,  # 24: the fill was reversed: what it reports filled is the truth
}
# Futu's statuses of orders still working (what an open-orders query asks for).
WORKING_STATUSES: Final = (
    "UNSUBMITTED",
    "WAITING_SUBMIT",
    "SUBMITTING",
    "TIMEOUT",
    "SUBMITTED",
    "FILLED_PART",
    "CANCELLING_PART",
    "CANCELLING_ALL",
)
_SIDES: Final = {"BUY": Side.BUY, "BUY_BACK": Side.BUY, "SELL": Side.SELL, "SELL_SHORT": Side.SELL}
_MARKET_TYPES: Final = frozenset({"MARKET", "STOP", "MARKET_IF_TOUCHED", "TRAILING_STOP", "TWAP", "VWAP"})
_STOP_TYPES: Final = frozenset({"STOP", "STOP_LIMIT", "TRAILING_STOP", "TRAILING_STOP_LIMIT"})
OPEN_STATES: Final = frozenset({"MORNING", "AFTERNOON"})  # HK's regular sessions (paper trades only in them)

# What the SDK itself answers when the connection, not OpenD, failed: the request may or may not have arrived.
_TRANSPORT: Final = frozenset(
    {
        "Disconnect",
        "Connect timeout",
        "Context status bad",
        "Connection closed",
        "Connection lost",
        "Not connected",
        "Abnormal event timeout",
        "Timeout",
    }
)
_BUSY: Final = ("too frequent", "frequency", "rate limit", "频率", "频繁", "busy", "try again")
_OPERATOR: Final = ("unlock", "locked", "password", "login", "logged", "解锁", "登录", "permission", "authority")


# --- codes and numbers ------------------------------------------------------------------------------------


def canonical(symbol: str) -> str:
    """An HK code in its canonical five digits (``700``, ``0700.HK`` and ``HK.00700`` are ``00700``)."""
    found = canonical_symbol(Market.HK, symbol)
    if found is None:
        raise InvalidInput(f"{symbol[:40]!r} is not an HK stock code")
    return found


def futu_code(symbol: str) -> str:
    """``00700`` as Futu names it: ``HK.00700``."""
    return f"HK.{canonical(symbol)}"


def symbol_of(code: object) -> str | None:
    """``HK.00700`` → ``00700``; None for a code of another market."""
    text = str(code)
    if not text.startswith("HK."):
        return None
    return canonical_symbol(Market.HK, text)


def dec(value: object) -> Decimal | None:
    """The SDK's number (a float, a numpy scalar, an int or a string) as an exact Decimal; None for what Futu
    sends when there is none (``'N/A'``, NaN, an empty string)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if hasattr(value, "item") and not isinstance(value, str | int | float):
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = repr(value)  # the shortest round-trip form: 380.2 stays 380.2
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def number(value: object, what: str) -> Decimal:
    found = dec(value)
    if found is None:
        raise TemporaryFailure(f"Futu sent no usable {what} ({str(value)[:40]!r})")
    return found


def quantity(value: object) -> Decimal:
    """A share count in plain form (Futu sends 100.0)."""
    return _trim(number(value, "quantity"))


def price(value: object) -> Decimal | None:
    """A price without the float's trailing noise (Futu keeps 3 places)."""
    result = dec(value)
    if result is None:
        return None
    return _trim(result.quantize(Decimal("0.001")))


def _trim(value: Decimal) -> Decimal:
    """Without trailing zeros, in plain form (``370``, never ``3.7E+2``)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def wire(value: Decimal) -> float:
    """A Decimal for the SDK's float parameters; exact for prices on the spread and whole quantities."""
    result = float(value)
    if Decimal(repr(result)) != value:
        raise InvalidInput(f"{plain(value)} cannot be sent exactly")
    return result


def parse_time(text: object) -> datetime | None:
    """Futu's ``YYYY-MM-DD HH:MM:SS[.fff]`` (market time, HK) as an aware datetime."""
    raw = str(text).strip()
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, pattern).replace(tzinfo=HKT)
        except ValueError:
            continue
    return None


def remark(client_order_id: str) -> str:
    """The client order id as the order's remark (Futu has no client order id)."""
    if not client_order_id or len(client_order_id.encode()) > REMARK_BYTES:
        raise InvalidInput(
            f"client order id {client_order_id[:80]!r} does not fit Futu's remark of {REMARK_BYTES} bytes"
        )
    return client_order_id


# --- orders, positions, funds -----------------------------------------------------------------------------


def order_status(status: object) -> OrderStatus:
    return STATUSES.get(str(status), OrderStatus.ACCEPTED)


def is_final(row: Row) -> bool:
    return order_status(row.get("order_status")).is_open is False


def broker_order(row: Row, at: datetime) -> BrokerOrder:
    """One order row of the SDK (a query, a place answer or a push). `at` stands in for a missing create time."""
    order_id = str(row.get("order_id", ""))
    symbol = symbol_of(row.get("code"))
    if not order_id or symbol is None:
        raise TemporaryFailure(f"Futu sent an order this adapter cannot read ({order_id or 'no id'})")
    kind = str(row.get("order_type", ""))
    filled = quantity(row.get("dealt_qty", 0))
    status = order_status(row.get("order_status"))
    if status is OrderStatus.ACCEPTED and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    is_market = kind in _MARKET_TYPES
    return BrokerOrder(
        broker_order_id=order_id,
        client_order_id=str(row.get("remark") or "") or f"futu-{order_id}",
        symbol=symbol,
        side=_SIDES.get(str(row.get("trd_side")), Side.BUY),
        quantity=quantity(row.get("qty")),
        order_type=OrderType.MARKET if is_market else OrderType.LIMIT,
        limit_price=None if is_market else price(row.get("price")),
        status=status,
        filled_quantity=filled,
        avg_fill_price=price(row.get("dealt_avg_price")) if filled > 0 else None,
        submitted_at=parse_time(row.get("create_time")) or at,
        stop_price=price(row.get("aux_price")) if kind in _STOP_TYPES else None,
    )


def newer(a: Row, b: Row) -> Row:
    """Of two reports of one order, the later: more filled, else ended, else updated later."""

    def rank(row: Row) -> tuple[Decimal, bool, str]:
        return (dec(row.get("dealt_qty")) or Decimal(0), is_final(row), str(row.get("updated_time", "")))

    return b if rank(b) >= rank(a) else a


def position(row: Row) -> BrokerPosition | None:
    symbol = symbol_of(row.get("code"))
    qty = dec(row.get("qty"))
    if symbol is None or qty is None or qty == 0:
        return None
    avg = dec(row.get("average_cost"))
    if avg is None or avg <= 0:
        avg = dec(row.get("cost_price")) or Decimal(0)
    signed = -abs(qty) if str(row.get("position_side")) == "SHORT" else qty
    return BrokerPosition(symbol, quantity(signed), price(avg) or Decimal(0))


def account(row: Row) -> Account:
    cash = number(row.get("cash"), "cash")
    return Account(
        cash=cash,
        equity=number(row.get("total_assets"), "total assets"),
        buying_power=dec(row.get("power")) or cash,
        currency=str(row.get("currency") or "HKD") if str(row.get("currency")) != "N/A" else "HKD",
    )


# --- market data ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one snapshot row says of a symbol: its quote, board lot and the price spread at its price."""

    quote: Quote
    lot: Decimal
    spread: Decimal
    prev_close: Decimal
    open: Decimal | None
    volume: Decimal
    suspended: bool


def snapshot(row: Row, at: datetime) -> Snapshot | None:
    symbol = symbol_of(row.get("code"))
    last = price(row.get("last_price"))
    lot = dec(row.get("lot_size"))
    spread = dec(row.get("price_spread"))
    if symbol is None or last is None or lot is None or lot <= 0 or spread is None or spread <= 0:
        return None
    bid = price(row.get("bid_price")) or last
    ask = price(row.get("ask_price")) or last
    opening = price(row.get("open_price"))
    return Snapshot(
        quote=Quote(
            symbol=symbol,
            bid=bid,
            ask=ask,
            last=last,
            bid_size=dec(row.get("bid_vol")) or Decimal(0),
            ask_size=dec(row.get("ask_vol")) or Decimal(0),
            at=parse_time(row.get("update_time")) or at,
        ),
        lot=quantity(lot),
        spread=_trim(spread),
        prev_close=price(row.get("prev_close_price")) or last,
        open=opening if opening else None,
        volume=dec(row.get("volume")) or Decimal(0),
        suspended=bool(row.get("suspension") is True),
    )


def scan_row(snap: Snapshot, avg_volume: Decimal) -> ScanRow:
    q = snap.quote
    return ScanRow(q.symbol, q.last, snap.prev_close, snap.open, snap.volume, avg_volume, q.bid, q.ask)


def bar(row: Row, size: BarSize) -> Bar | None:
    """One K line. Futu stamps a minute K line with its end and a day's with the date: the port wants starts."""
    stamp = parse_time(row.get("time_key"))
    values = [price(row.get(k)) for k in ("open", "high", "low", "close")]
    volume = dec(row.get("volume"))
    if stamp is None or volume is None or any(v is None for v in values):
        return None
    o, h, lo, c = (v for v in values if v is not None)
    start = stamp if size is BarSize.DAY else stamp - size.duration
    try:
        return Bar(start, o, h, lo, c, volume)
    except ValueError:
        return None


def ktype(size: BarSize) -> str:
    return {BarSize.MINUTE_1: "K_1M", BarSize.MINUTE_5: "K_5M", BarSize.DAY: "K_DAY"}[size]


def history_window(size: BarSize, count: int, now: datetime) -> tuple[str, str]:
    """The (start, end) dates asked for: enough calendar days to hold `count` bars of `size`."""
    days = count * 7 // 5 + 10 if size is BarSize.DAY else (count * int(size.duration.total_seconds()) // 60) // 330 + 5
    local = now.astimezone(HKT)
    return f"{local - timedelta(days=days):%Y-%m-%d}", f"{local:%Y-%m-%d}"


# --- checks before an order leaves ------------------------------------------------------------------------


def check_lot(symbol: str, qty: Decimal, lot: Decimal) -> None:
    if qty <= 0 or qty % lot != 0:
        raise BrokerRejected(
            f"{plain(qty)} shares of {symbol} is not a whole number of its board lots of {plain(lot)}; nothing was sent"
        )


def check_spread(symbol: str, limit: Decimal, spread: Decimal) -> None:
    """A limit price must be a multiple of the price spread (the tick) the snapshot gives at this price."""
    if limit <= 0 or limit % spread != 0:
        below = round_to(limit, spread, ROUND_FLOOR)
        above = round_to(limit, spread, ROUND_CEILING)
        raise BrokerRejected(
            f"limit price {plain(limit)} of {symbol} is off its price spread of {plain(spread)} "
            f"(the nearest prices are {plain(below)} and {plain(above)}); nothing was sent"
        )


# --- errors -----------------------------------------------------------------------------------------------


def one_line(text: str, secrets: Sequence[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def is_transport(message: str) -> bool:
    """True when the SDK, not OpenD, answered: the connection failed or the answer never came."""
    text = message.strip()
    return text in _TRANSPORT or text.startswith("PacketErr.")


def translate(what: str, message: object, secrets: Sequence[str] = ()) -> CatalystError:
    """An SDK failure (its ``(RET_ERROR, message)``) as the domain's error, once, on one line."""
    text = one_line(str(message), secrets) or "no reason given"
    lowered = text.lower()
    if is_transport(text):
        return TemporaryFailure(f"OpenD did not answer {what} ({text}); it may or may not have acted")
    if any(word in lowered for word in _BUSY):
        return TemporaryFailure(f"OpenD refused {what} for now: {text}")
    if any(word in lowered for word in _OPERATOR):
        return OperatorNeeded(f"OpenD refused {what}: {text}")
    return BrokerRejected(f"OpenD refused {what}: {text}")
