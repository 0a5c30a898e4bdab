"""The pre-trade rules: each a pure function of (snapshot, limits) returning a Check. docs/risk.md lists them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import CycleMode, OrderType, Side, TradingState
from catalyst_mcp.risk.limits import RiskLimits
from catalyst_mcp.risk.snapshot import RiskSnapshot

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Check:
    rule: str
    passed: bool
    limit: str | None
    actual: str | None
    message: str


Rule = Callable[[RiskSnapshot, RiskLimits], Check]


def _ok(rule: str, limit: str | None, actual: str | None, message: str = "ok") -> Check:
    return Check(rule, True, limit, actual, message)


def _fail(rule: str, limit: str | None, actual: str | None, message: str) -> Check:
    return Check(rule, False, limit, actual, message)


def _money(value: Decimal) -> str:
    return plain(value.quantize(_CENT))


def _pct(value: Decimal) -> str:
    return plain(value.quantize(_CENT)) + "%"


def _beyond(actual: Decimal, limit: Decimal, places: int = 2) -> str:
    """``actual`` rounded for a message, with as many more places as it takes not to look equal to ``limit``."""
    for p in range(places, 9):
        step = Decimal(1).scaleb(-p)
        shown = actual.quantize(step)
        if actual == limit or shown != limit.quantize(step):
            return plain(shown)
    return plain(actual)


# --- the symbol, the state, the clock --------------------------------------------------------------------


def symbol_tradable(s: RiskSnapshot, _: RiskLimits) -> Check:
    if s.lot_size is None or s.quote is None:
        return _fail(
            "symbol_tradable",
            "known symbol",
            s.intent.symbol,
            f"{s.intent.symbol} is not a tradable symbol in this market",
        )
    return _ok("symbol_tradable", "known symbol", s.intent.symbol)


def symbol_lists(s: RiskSnapshot, limits: RiskLimits) -> Check:
    symbol = s.intent.symbol
    if symbol in limits.restricted_symbols:
        return _fail("symbol_lists", "not restricted", symbol, f"{symbol} is on the restricted list")
    if limits.allowed_symbols is not None and symbol not in limits.allowed_symbols:
        return _fail("symbol_lists", "on the allow list", symbol, f"{symbol} is not on the allow list")
    return _ok("symbol_lists", "not restricted", symbol)


def trading_state(s: RiskSnapshot, _: RiskLimits) -> Check:
    state = s.trading_state
    if state is TradingState.HALTED:
        return _fail("trading_state", "active", state.value, "trading is halted: no new orders")
    if state is TradingState.REDUCING and s.is_entry:
        return _fail(
            "trading_state",
            "reducing: exits only",
            state.value,
            "trading is reducing: only orders that shrink a position are allowed",
        )
    return _ok("trading_state", "active", state.value)


def market_open(s: RiskSnapshot, _: RiskLimits) -> Check:
    if not s.market_open:
        return _fail("market_open", "open", "closed", "the market is closed")
    return _ok("market_open", "open", "open")


def entry_cutoff(s: RiskSnapshot, limits: RiskLimits) -> Check:
    cutoff, left = limits.no_entry_minutes_before_close, s.minutes_to_close
    shown = None if left is None else plain(left.quantize(Decimal("0.1")))
    if s.is_entry and left is not None and left < cutoff:
        return _fail(
            "entry_cutoff",
            f"{cutoff} min",
            shown,
            f"no new entries in the last {cutoff} minutes before the close ({shown} min left)",
        )
    return _ok("entry_cutoff", f"{cutoff} min", shown)


def book_reconciled(s: RiskSnapshot, _: RiskLimits) -> Check:
    if s.is_entry and not s.last_sync_ok:
        return _fail(
            "book_reconciled",
            "last sync applied",
            "refused or failed",
            "no new entries while the last position sync was refused or failed; run sync_positions",
        )
    return _ok("book_reconciled", "last sync applied", "ok" if s.last_sync_ok else "exit allowed")


# --- quantity and direction --------------------------------------------------------------------------------


def lot_size(s: RiskSnapshot, _: RiskLimits) -> Check:
    lot, qty = s.lot_size, s.intent.quantity
    if lot is None:
        return _fail("lot_size", None, plain(qty), "lot size unknown for this symbol")
    if qty % lot != 0:
        return _fail(
            "lot_size",
            plain(lot),
            plain(qty),
            f"quantity {plain(qty)} is not a whole multiple of the lot size {plain(lot)}",
        )
    return _ok("lot_size", plain(lot), plain(qty))


def max_order_shares(s: RiskSnapshot, limits: RiskLimits) -> Check:
    qty, cap = s.intent.quantity, limits.max_order_shares
    if qty > cap:
        return _fail(
            "max_order_shares",
            plain(cap),
            plain(qty),
            f"quantity {plain(qty)} exceeds the maximum of {plain(cap)} shares per order",
        )
    return _ok("max_order_shares", plain(cap), plain(qty))


def long_only(s: RiskSnapshot, limits: RiskLimits) -> Check:
    if s.intent.side is Side.BUY or limits.allow_short:
        return _ok("long_only", None, None)
    long_qty = max(s.held, Decimal(0))
    if s.intent.quantity > long_qty:
        reserved = s.reserved_same_side
        why = (
            f" ({plain(min(reserved, max(s.booked, Decimal(0))))} of the {plain(max(s.booked, Decimal(0)))} held"
            " are already in working or approved sells)"
            if reserved > 0
            else ""
        )
        return _fail(
            "long_only",
            plain(long_qty),
            plain(s.intent.quantity),
            f"sell of {plain(s.intent.quantity)} exceeds the {plain(long_qty)} shares available to sell{why}"
            " (short selling is not allowed)",
        )
    return _ok("long_only", plain(long_qty), plain(s.intent.quantity))


# --- prices -------------------------------------------------------------------------------------------------


def quote_fresh(s: RiskSnapshot, limits: RiskLimits) -> Check:
    """Fail closed: a missing, zero, crossed, NaN or stale quote refuses the order."""
    max_age = limits.max_quote_age_seconds
    if not s.quote_usable:
        return _fail("quote_fresh", f"{max_age}s", "unusable", "no usable quote (missing, zero, crossed or NaN)")
    assert s.quote is not None
    age = Decimal(str(((s.market_now or s.now) - s.quote.at).total_seconds()))
    if age > max_age:
        shown = _beyond(age, Decimal(max_age), 0)
        return _fail("quote_fresh", f"{max_age}s", f"{shown}s", f"the quote is {shown} s old, older than {max_age} s")
    return _ok("quote_fresh", f"{max_age}s", f"{plain(max(age, Decimal(0)).quantize(Decimal(1)))}s")


def price_collar(s: RiskSnapshot, limits: RiskLimits) -> Check:
    collar, limit_price = limits.price_collar_pct, s.intent.limit_price
    if s.intent.order_type is not OrderType.LIMIT or limit_price is None:
        return _ok("price_collar", _pct(collar), None, "market order")
    if not s.quote_usable:
        return _fail("price_collar", _pct(collar), plain(limit_price), "no usable quote to check the limit against")
    assert s.quote is not None
    mid = s.quote.mid
    away = abs(limit_price - mid) / mid * 100
    if away > collar:
        return _fail(
            "price_collar",
            _pct(collar),
            f"{_beyond(away, collar)}%",
            f"limit {plain(limit_price)} is {_beyond(away, collar)}% from the quote {plain(mid)},"
            f" beyond {_pct(collar)}",
        )
    return _ok("price_collar", _pct(collar), _pct(away))


def price_drift(s: RiskSnapshot, limits: RiskLimits) -> Check:
    """At execution: the price must not have moved beyond the collar since the approval."""
    collar, then, now = limits.price_collar_pct, s.approved_reference, s.reference_price
    if then is None or now is None or then <= 0:
        return _ok("price_drift", _pct(collar), None, "nothing to compare")
    moved = abs(now - then) / then * 100
    if moved > collar:
        return _fail(
            "price_drift",
            _pct(collar),
            _pct(moved),
            f"the price moved {_pct(moved)} since the approval ({plain(then)} -> {plain(now)}),"
            f" beyond {_pct(collar)}: run check_risk again",
        )
    return _ok("price_drift", _pct(collar), _pct(moved))


# --- size and exposure --------------------------------------------------------------------------------------


def min_order_value(s: RiskSnapshot, limits: RiskLimits) -> Check:
    floor, notional = limits.min_order_value, s.notional
    if not s.is_entry or notional is None:
        return _ok("min_order_value", _money(floor), None, "exit or unpriced: not limited")
    if notional < floor:
        return _fail(
            "min_order_value",
            _money(floor),
            _money(notional),
            f"order value {_money(notional)} is below the minimum of {_money(floor)}",
        )
    return _ok("min_order_value", _money(floor), _money(notional))


def max_position_value(s: RiskSnapshot, limits: RiskLimits) -> Check:
    cap, price = limits.max_position_value, s.reference_price
    if not s.is_entry:
        return _ok("max_position_value", _money(cap), None, "exit: not limited")
    if price is None:
        return _fail("max_position_value", _money(cap), None, "no price to value the order at")
    total = abs(s.after) * price
    if total > cap:
        return _fail(
            "max_position_value",
            _money(cap),
            _money(total),
            f"position value {_money(total)} would exceed the maximum of {_money(cap)}",
        )
    return _ok("max_position_value", _money(cap), _money(total))


def concentration(s: RiskSnapshot, limits: RiskLimits) -> Check:
    cap, price, equity = limits.max_position_pct_of_equity, s.reference_price, s.account.equity
    if not s.is_entry or price is None:
        return _ok("concentration", _pct(cap), None, "exit or unpriced: not limited")
    if equity <= 0:
        return _fail("concentration", _pct(cap), None, "equity is zero or negative")
    share = abs(s.after) * price / equity * 100
    if share > cap:
        return _fail(
            "concentration",
            _pct(cap),
            f"{_beyond(share, cap)}%",
            f"{s.intent.symbol} would be {_beyond(share, cap)}% of equity, above {_pct(cap)}",
        )
    return _ok("concentration", _pct(cap), _pct(share))


def max_open_positions(s: RiskSnapshot, limits: RiskLimits) -> Check:
    """Open positions plus the symbols a working order or an outstanding approval may still open."""
    cap = limits.max_open_positions
    count = len(s.positions) + len(s.reserved_symbols - {s.intent.symbol})
    opens_new = s.held == 0 and s.after != 0
    if opens_new and count >= cap:
        pending = len(s.reserved_symbols - {s.intent.symbol})
        why = f" ({len(s.positions)} held, {pending} being opened)" if pending else ""
        return _fail(
            "max_open_positions",
            str(cap),
            str(count + 1),
            f"a new position would make {count + 1} open positions{why}, above the maximum of {cap}",
        )
    return _ok("max_open_positions", str(cap), str(count + (1 if opens_new else 0)))


def buying_power(s: RiskSnapshot, _: RiskLimits) -> Check:
    available = s.account.buying_power - s.reserved_by_open_buys
    if s.intent.side is Side.SELL:
        return _ok("buying_power", _money(available), None, "sell: no buying power needed")
    notional = s.notional
    if notional is None:
        return _fail("buying_power", _money(available), None, "no price to value the order at")
    if notional > available:
        return _fail(
            "buying_power",
            _money(available),
            _money(notional),
            f"order value {_money(notional)} exceeds buying power {_money(available)}"
            " (after working orders and approvals)",
        )
    return _ok("buying_power", _money(available), _money(notional))


def daily_loss(s: RiskSnapshot, limits: RiskLimits) -> Check:
    """Realised plus unrealised loss since the start of the day, against the smaller of the two limits."""
    pnl, start = s.day_pnl, s.start_of_day_equity
    cap = limits.max_daily_loss
    if start is not None and start > 0:
        cap = min(cap, start * limits.max_daily_loss_pct / 100)
    if pnl is None:
        return _ok("daily_loss", _money(cap), None, "no start-of-day equity yet")
    loss = max(-pnl, Decimal(0))
    if loss > 0 and loss >= cap:
        return _fail(
            "daily_loss",
            _money(cap),
            _money(loss),
            f"the day's loss {_money(loss)} has reached the limit of {_money(cap)}: trading halts",
        )
    return _ok("daily_loss", _money(cap), _money(loss))


# --- stops, targets and the loss a trade may cost ---------------------------------------------------------


def stop_loss(s: RiskSnapshot, limits: RiskLimits) -> Check:
    stop, price = s.intent.stop_loss, s.reference_price
    if not s.is_entry:
        return _ok("stop_loss", None, None, "exit: no stop needed")
    if stop is None:
        if limits.require_stop_loss:
            return _fail("stop_loss", "required for entries", None, "a stop loss is required for new entries")
        return _ok("stop_loss", None, None)
    if price is None:
        return _fail("stop_loss", None, plain(stop), "no price to place the stop against")
    where = "below" if s.entry_is_long else "above"
    if (stop >= price) if s.entry_is_long else (stop <= price):
        return _fail(
            "stop_loss",
            f"{where} {plain(price)}",
            plain(stop),
            f"stop loss {plain(stop)} must be {where} the price {plain(price)}",
        )
    width = abs(price - stop) / price * 100
    if width > limits.max_stop_pct:
        return _fail(
            "stop_loss",
            f"within {_pct(limits.max_stop_pct)}",
            f"{_beyond(width, limits.max_stop_pct)}%",
            f"stop loss {plain(stop)} is {_beyond(width, limits.max_stop_pct)}% away,"
            f" wider than {_pct(limits.max_stop_pct)}",
        )
    return _ok("stop_loss", f"{where} {plain(price)}, within {_pct(limits.max_stop_pct)}", plain(stop))


def take_profit(s: RiskSnapshot, _: RiskLimits) -> Check:
    target, price = s.intent.take_profit, s.reference_price
    if target is None or not s.is_entry or price is None:
        return _ok("take_profit", None, None if target is None else plain(target))
    where = "above" if s.entry_is_long else "below"
    if (target <= price) if s.entry_is_long else (target >= price):
        return _fail(
            "take_profit",
            f"{where} {plain(price)}",
            plain(target),
            f"take profit {plain(target)} must be {where} the price {plain(price)}",
        )
    return _ok("take_profit", f"{where} {plain(price)}", plain(target))


def reward_risk(s: RiskSnapshot, limits: RiskLimits) -> Check:
    stop, target, price, floor = s.intent.stop_loss, s.intent.take_profit, s.reference_price, limits.min_reward_risk
    if not s.is_entry or stop is None or target is None or price is None or stop == price:
        return _ok("reward_risk", plain(floor), None, "needs an entry with both stop and target")
    ratio = abs(target - price) / abs(price - stop)
    if ratio < floor:
        return _fail(
            "reward_risk",
            plain(floor),
            _beyond(ratio, floor),
            f"reward/risk {_beyond(ratio, floor)} is below the minimum of {plain(floor)}",
        )
    return _ok("reward_risk", plain(floor), plain(ratio.quantize(_CENT)))


def max_loss_per_trade(s: RiskSnapshot, limits: RiskLimits) -> Check:
    stop, price, equity = s.intent.stop_loss, s.reference_price, s.account.equity
    cap = equity * limits.max_loss_per_trade_pct / 100
    if not s.is_entry or stop is None or price is None:
        return _ok("max_loss_per_trade", _money(max(cap, Decimal(0))), None, "needs an entry with a stop")
    at_risk = abs(price - stop) * s.intent.quantity
    if at_risk > cap:
        return _fail(
            "max_loss_per_trade",
            _money(cap),
            _money(at_risk),
            f"hitting the stop would lose {_money(at_risk)}, more than {_pct(limits.max_loss_per_trade_pct)}"
            f" of equity ({_money(cap)})",
        )
    return _ok("max_loss_per_trade", _money(cap), _money(at_risk))


# --- pace ---------------------------------------------------------------------------------------------------


def duplicate_order(s: RiskSnapshot, limits: RiskLimits) -> Check:
    """An order for the same symbol and side sent within the window, or an approval for one outstanding."""
    seconds = limits.duplicate_window_seconds
    window = timedelta(seconds=seconds)
    symbol, side = s.intent.symbol, s.intent.side
    sent = [o for o in s.recent_orders if o.symbol == symbol and o.side is side and s.now - o.at < window]
    approved = [a for a in s.approvals if a.symbol == symbol and a.side is side] if seconds > 0 else []
    if sent or approved:
        what = (
            f"a {side.value} order for {symbol} was sent less than {seconds} s ago"
            if sent
            else f"an approval for a {side.value} of {symbol} is outstanding: execute it or let it expire"
        )
        count = len(sent) + sum(a.count for a in approved)
        return _fail("duplicate_order", f"{seconds}s", f"{count} recent", what)
    return _ok("duplicate_order", f"{seconds}s", "0 recent")


def order_rate(s: RiskSnapshot, limits: RiskLimits) -> Check:
    """Orders sent in the last minute and today, each counting every outstanding approval as sent now."""
    outstanding = s.outstanding
    minute = s.orders_last_minute
    if minute is None:
        minute = sum(1 for o in s.recent_orders if s.now - o.at < timedelta(minutes=1))
    last_minute = minute + outstanding
    today = (len(s.recent_orders) if s.orders_today is None else s.orders_today) + outstanding
    pending = f" ({outstanding} approved, not yet sent)" if outstanding else ""
    if last_minute >= limits.max_orders_per_minute:
        return _fail(
            "order_rate",
            f"{limits.max_orders_per_minute}/min",
            f"{last_minute}/min",
            f"{last_minute} orders in the last minute{pending}: the limit is {limits.max_orders_per_minute}",
        )
    if today >= limits.max_trades_per_day:
        return _fail(
            "order_rate",
            f"{limits.max_trades_per_day}/day",
            f"{today}/day",
            f"{today} orders today{pending}: the limit is {limits.max_trades_per_day}",
        )
    return _ok(
        "order_rate",
        f"{limits.max_orders_per_minute}/min, {limits.max_trades_per_day}/day",
        f"{last_minute}/min, {today}/day",
    )


# --- the cycle ---------------------------------------------------------------------------------------------


def cycle_mode(s: RiskSnapshot, _: RiskLimits) -> Check:
    """A close cycle only shrinks positions; a scan cycle places nothing (its tools are refused before)."""
    mode = s.cycle_mode
    shown = "none" if mode is None else mode.value
    if mode is CycleMode.SCAN:
        return _fail("cycle_mode", "trade or close", shown, "a scan cycle places no orders")
    if mode is CycleMode.CLOSE and s.is_entry:
        return _fail(
            "cycle_mode",
            "close: exits only",
            shown,
            "a close cycle only takes orders that shrink a position",
        )
    return _ok("cycle_mode", "trade or close" if mode is not None else "outside any cycle", shown)
