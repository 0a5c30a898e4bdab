"""The emulator's order record and Alpaca's JSON shapes as it serves them: money as strings on the trading
API, numbers on the market-data API, times in RFC 3339 (UTC with a Z, or New York time for the clock)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.responses import JSONResponse

from catalyst_mcp.domain.models import Quote
from catalyst_mcp.markets.profiles import US_PROFILE

PROFILE = US_PROFILE
_NULLS = ("expired_at", "replaced_at", "replaced_by", "replaces", "notional", "trail_percent", "trail_price", "hwm")


@dataclass
class EmuOrder:
    id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    type: str
    order_class: str
    created_at: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    status: str = "accepted"
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    legs: list[str] = field(default_factory=list)
    parent: str | None = None
    pending_cancel_reads: int = 0
    time_in_force: str = "day"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def asset_id(symbol: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, symbol))


def error(status: int, code: int, message: str) -> JSONResponse:
    """Alpaca's error body."""
    return JSONResponse({"code": code, "message": message}, status_code=status)


def order_json(o: EmuOrder, legs: list[dict[str, Any]] | None) -> dict[str, Any]:
    times: dict[str, datetime | None] = {
        "created_at": o.created_at,
        "submitted_at": o.created_at,
        "updated_at": o.updated_at or o.created_at,
    }
    times |= {"filled_at": o.filled_at, "canceled_at": o.canceled_at, "failed_at": o.failed_at}
    money = {"qty": o.qty, "filled_qty": o.filled_qty, "filled_avg_price": o.filled_avg_price}
    money |= {"limit_price": o.limit_price, "stop_price": o.stop_price}
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        **{k: v and iso(v) for k, v in times.items()},
        **dict.fromkeys(_NULLS),
        **{k: text(v) for k, v in money.items()},
        "asset_id": asset_id(o.symbol),
        "symbol": o.symbol,
        "asset_class": "us_equity",
        "order_class": o.order_class,
        "order_type": o.type,
        "type": o.type,
        "side": o.side,
        "position_intent": f"{o.side}_to_{'close' if o.parent or o.order_class == 'oco' else 'open'}",
        "time_in_force": o.time_in_force,
        "status": o.status,
        "extended_hours": False,
        "legs": legs,
    }


def account_json(cash: Decimal, long_value: Decimal, last_equity: Decimal) -> dict[str, Any]:
    money = dict.fromkeys(("cash", "buying_power", "regt_buying_power", "non_marginable_buying_power"), cash)
    money |= dict.fromkeys(("equity", "portfolio_value"), cash + long_value)
    money |= {"last_equity": last_equity, "long_market_value": long_value}
    zero: tuple[str, ...] = (
        "short_market_value",
        "initial_margin",
        "maintenance_margin",
        "last_maintenance_margin",
        "sma",
    )
    zero += ("accrued_fees", "daytrading_buying_power", "pending_transfer_in", "pending_transfer_out")
    flags: tuple[str, ...] = ("pattern_day_trader", "trading_blocked", "transfers_blocked", "account_blocked")
    flags += ("trade_suspended_by_user", "shorting_enabled")
    return {
        "id": asset_id("emulator-account"),
        "account_number": "PA0EMULATOR",
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "currency": "USD",
        "multiplier": "1",
        "created_at": "2026-01-02T14:30:00Z",
        "daytrade_count": 0,
        **{k: text(v) for k, v in money.items()},
        **dict.fromkeys(zero, "0"),
        **dict.fromkeys(flags, False),
    }


def position_json(symbol: str, qty: Decimal, avg: Decimal, last: Decimal, available: Decimal) -> dict[str, Any]:
    money = {"qty": qty, "qty_available": available, "avg_entry_price": avg, "current_price": last}
    money |= {"market_value": qty * last, "cost_basis": qty * avg, "unrealized_pl": (last - avg) * qty}
    money |= {"unrealized_plpc": ((last - avg) / avg * (1 if qty > 0 else -1)).quantize(Decimal("0.0001"))}
    money |= {"lastday_price": last}
    return {
        "asset_id": asset_id(symbol),
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "side": "long" if qty > 0 else "short",
        **{k: text(v) for k, v in money.items()},
        **dict.fromkeys(("unrealized_intraday_pl", "unrealized_intraday_plpc", "change_today"), "0"),
    }


def asset_json(symbol: str, name: str) -> dict[str, Any]:
    flags = ("tradable", "marginable", "shortable", "easy_to_borrow", "fractionable")
    return {
        "id": asset_id(symbol),
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": symbol,
        "name": name,
        "status": "active",
        **dict.fromkeys(flags, True),
        "maintenance_margin_requirement": 30,
        "attributes": [],
    }


def _sessions_from(now: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The (open, close) of each trading day from ``now``'s day on."""
    day = now.astimezone(PROFILE.timezone).date()
    for offset in range(30):
        bounds = PROFILE.session_bounds(day + timedelta(days=offset))
        if bounds is not None:
            yield bounds


def clock_json(now: datetime) -> dict[str, Any]:
    is_open = PROFILE.is_open(now)
    upcoming = [b for b in _sessions_from(now) if b[1] > now]
    bounds = upcoming[0]
    next_open = upcoming[1][0] if is_open else bounds[0]
    tz = PROFILE.timezone
    return {
        "timestamp": now.astimezone(tz).isoformat(),
        "is_open": is_open,
        "next_open": next_open.astimezone(tz).isoformat(),
        "next_close": bounds[1].astimezone(tz).isoformat(),
    }


def calendar_json(start: date, end: date) -> list[dict[str, Any]]:
    rows = []
    for day in (start + timedelta(days=i) for i in range(min((end - start).days + 1, 400))):
        bounds = PROFILE.session_bounds(day)
        if bounds is not None:
            times = {"open": f"{bounds[0]:%H:%M}", "close": f"{bounds[1]:%H:%M}"}
            extended = {"session_open": "0400", "session_close": "2000"}
            rows.append({"date": day.isoformat(), **times, **extended, "settlement_date": str(day + timedelta(days=1))})
    return rows


def quote_json(q: Quote) -> dict[str, Any]:
    sides = {"ap": q.ask, "as": q.ask_size, "bp": q.bid, "bs": q.bid_size}
    return {"t": iso(q.at), "ax": "V", "bx": "V", **{k: float(v) for k, v in sides.items()}, "c": ["R"], "z": "C"}


def trade_json(q: Quote) -> dict[str, Any]:
    return {"t": iso(q.at), "x": "V", "p": float(q.last), "s": 100, "c": ["@"], "i": 1, "z": "C"}


def bar_json(at: datetime, o: Decimal, c: Decimal, v: Decimal) -> dict[str, Any]:
    prices = {"o": o, "h": max(o, c), "l": min(o, c), "c": c, "vw": ((o + c) / 2).quantize(Decimal("0.0001"))}
    return {"t": iso(at), **{k: float(p) for k, p in prices.items()}, "v": float(v), "n": int(v) // 100}


def fill_activity(o: EmuOrder, qty: Decimal, price: Decimal, at: datetime) -> dict[str, Any]:
    """A FILL account activity; its id sorts by time, like Alpaca's."""
    stamp = f"{at.astimezone(UTC):%Y%m%d%H%M%S}{at.microsecond // 1000:03d}"
    money = {"price": price, "qty": qty, "leaves_qty": o.qty - o.filled_qty, "cum_qty": o.filled_qty}
    return {
        "id": f"{stamp}::{uuid.uuid4()}",
        "activity_type": "FILL",
        "transaction_time": iso(at),
        "type": "fill" if o.status == "filled" else "partial_fill",
        **{k: text(v) for k, v in money.items()},
        "side": o.side,
        "symbol": o.symbol,
        "order_id": o.id,
        "order_status": o.status,
    }
