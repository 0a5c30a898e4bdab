"""The pre-trade rules. Each rule is a pure function of a snapshot; every rule is evaluated and reported."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from catalyst_mcp.config import RiskLimits
from catalyst_mcp.domain.decimals import floor_to, plain
from catalyst_mcp.domain.enums import OrderType, PositionSide, Side, TradingState
from catalyst_mcp.domain.models import Account, OrderIntent, Position, Quote


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """Everything the rules may look at, taken at one instant."""

    intent: OrderIntent
    quote: Quote | None
    lot_size: Decimal | None  # None: the symbol is not tradable here
    account: Account
    positions: Mapping[str, Position]
    market_open: bool
    trading_state: TradingState
    now: datetime

    @property
    def held(self) -> Decimal:
        """The book's signed quantity of the symbol (negative = short)."""
        position = self.positions.get(self.intent.symbol)
        return Decimal(0) if position is None else position.signed_quantity

    @property
    def after(self) -> Decimal:
        """The signed quantity once the order fills completely."""
        signed = self.intent.quantity if self.intent.side is Side.BUY else -self.intent.quantity
        return self.held + signed

    @property
    def is_entry(self) -> bool:
        """True when the order opens, grows or flips a position; False when it only shrinks or closes one."""
        held, after = self.held, self.after
        if after == 0:
            return False
        if held == 0 or (after > 0) != (held > 0):
            return True
        return abs(after) > abs(held)

    @property
    def entry_is_long(self) -> bool:
        return self.after > 0

    @property
    def reference_price(self) -> Decimal | None:
        """The price the order is valued at: the far side of the quote, or the limit if worse for us."""
        if self.quote is None:
            return self.intent.limit_price
        intent = self.intent
        if intent.side is Side.BUY:
            price = self.quote.ask
            if intent.order_type is OrderType.LIMIT and intent.limit_price is not None:
                price = max(price, intent.limit_price)
            return price
        return self.quote.bid

    @property
    def notional(self) -> Decimal | None:
        price = self.reference_price
        return None if price is None else price * self.intent.quantity


@dataclass(frozen=True, slots=True)
class Check:
    rule: str
    passed: bool
    limit: str | None
    actual: str | None
    message: str


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    checks: tuple[Check, ...]
    suggested_quantity: Decimal | None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.message for c in self.checks if not c.passed)


Rule = Callable[[RiskSnapshot, RiskLimits], Check]


def _ok(rule: str, limit: str | None, actual: str | None, message: str = "ok") -> Check:
    return Check(rule, True, limit, actual, message)


def _fail(rule: str, limit: str | None, actual: str | None, message: str) -> Check:
    return Check(rule, False, limit, actual, message)


def symbol_tradable(s: RiskSnapshot, _: RiskLimits) -> Check:
    if s.lot_size is None or s.quote is None:
        return _fail(
            "symbol_tradable",
            "known symbol",
            s.intent.symbol,
            f"{s.intent.symbol} is not a tradable symbol in this market",
        )
    return _ok("symbol_tradable", "known symbol", s.intent.symbol)


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


def lot_size(s: RiskSnapshot, _: RiskLimits) -> Check:
    lot = s.lot_size
    if lot is None:
        return _fail("lot_size", None, plain(s.intent.quantity), "lot size unknown for this symbol")
    if s.intent.quantity % lot != 0:
        return _fail(
            "lot_size",
            plain(lot),
            plain(s.intent.quantity),
            f"quantity {plain(s.intent.quantity)} is not a whole multiple of the lot size {plain(lot)}",
        )
    return _ok("lot_size", plain(lot), plain(s.intent.quantity))


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
    held = s.positions.get(s.intent.symbol)
    long_qty = held.quantity if held is not None and held.side is PositionSide.LONG else Decimal(0)
    if s.intent.quantity > long_qty:
        return _fail(
            "long_only",
            plain(long_qty),
            plain(s.intent.quantity),
            f"sell of {plain(s.intent.quantity)} exceeds the long position of {plain(long_qty)}"
            " (short selling is not allowed)",
        )
    return _ok("long_only", plain(long_qty), plain(s.intent.quantity))


def max_position_value(s: RiskSnapshot, limits: RiskLimits) -> Check:
    notional, cap = s.notional, limits.max_position_value
    if not s.is_entry:
        return _ok("max_position_value", plain(cap), None, "exit: not limited")
    if notional is None:
        return _fail("max_position_value", plain(cap), None, "no price to value the order at")
    price = s.reference_price
    assert price is not None  # notional is not None
    total = abs(s.after) * price
    if total > cap:
        return _fail(
            "max_position_value",
            plain(cap),
            plain(total.quantize(Decimal("0.01"))),
            f"position value {plain(total.quantize(Decimal('0.01')))} would exceed the maximum of {plain(cap)}",
        )
    return _ok("max_position_value", plain(cap), plain(total.quantize(Decimal("0.01"))))


def max_open_positions(s: RiskSnapshot, limits: RiskLimits) -> Check:
    count, cap = len(s.positions), limits.max_open_positions
    opens_new = s.intent.symbol not in s.positions and s.is_entry
    if opens_new and count >= cap:
        return _fail(
            "max_open_positions",
            str(cap),
            str(count + 1),
            f"a new position would make {count + 1} open positions, above the maximum of {cap}",
        )
    return _ok("max_open_positions", str(cap), str(count + (1 if opens_new else 0)))


def buying_power(s: RiskSnapshot, _: RiskLimits) -> Check:
    available = s.account.buying_power
    if s.intent.side is Side.SELL:
        return _ok("buying_power", plain(available), None, "sell: no buying power needed")
    notional = s.notional
    if notional is None:
        return _fail("buying_power", plain(available), None, "no price to value the order at")
    if notional > available:
        return _fail(
            "buying_power",
            plain(available),
            plain(notional.quantize(Decimal("0.01"))),
            f"order value {plain(notional.quantize(Decimal('0.01')))} exceeds buying power {plain(available)}",
        )
    return _ok("buying_power", plain(available), plain(notional.quantize(Decimal("0.01"))))


def stop_loss(s: RiskSnapshot, limits: RiskLimits) -> Check:
    intent, price = s.intent, s.reference_price
    if not s.is_entry:
        return _ok("stop_loss", None, None, "exit: no stop needed")
    if intent.stop_loss is None:
        if limits.require_stop_loss:
            return _fail("stop_loss", "required for entries", None, "a stop loss is required for new entries")
        return _ok("stop_loss", None, None)
    if price is None:
        return _fail("stop_loss", None, plain(intent.stop_loss), "no price to place the stop against")
    long_entry = s.entry_is_long
    wrong = intent.stop_loss >= price if long_entry else intent.stop_loss <= price
    if wrong:
        where = "below" if long_entry else "above"
        return _fail(
            "stop_loss",
            f"{where} {plain(price)}",
            plain(intent.stop_loss),
            f"stop loss {plain(intent.stop_loss)} must be {where} the price {plain(price)}",
        )
    return _ok("stop_loss", f"{'below' if long_entry else 'above'} {plain(price)}", plain(intent.stop_loss))


def take_profit(s: RiskSnapshot, _: RiskLimits) -> Check:
    intent, price = s.intent, s.reference_price
    if intent.take_profit is None or not s.is_entry or price is None:
        return _ok("take_profit", None, None if intent.take_profit is None else plain(intent.take_profit))
    long_entry = s.entry_is_long
    wrong = intent.take_profit <= price if long_entry else intent.take_profit >= price
    where = "above" if long_entry else "below"
    if wrong:
        return _fail(
            "take_profit",
            f"{where} {plain(price)}",
            plain(intent.take_profit),
            f"take profit {plain(intent.take_profit)} must be {where} the price {plain(price)}",
        )
    return _ok("take_profit", f"{where} {plain(price)}", plain(intent.take_profit))


RULES: tuple[Rule, ...] = (
    symbol_tradable,
    trading_state,
    market_open,
    lot_size,
    max_order_shares,
    long_only,
    max_position_value,
    max_open_positions,
    buying_power,
    stop_loss,
    take_profit,
)

_SIZE_RULES = frozenset({"max_position_value", "buying_power", "max_order_shares", "long_only"})


def suggest_quantity(s: RiskSnapshot, limits: RiskLimits) -> Decimal | None:
    """The largest whole-lot quantity the size rules allow, or None when there is none."""
    price, lot = s.reference_price, s.lot_size
    if price is None or lot is None or price <= 0:
        return None
    held = s.held
    caps = [limits.max_order_shares]
    if s.intent.side is Side.BUY:
        caps.append(s.account.buying_power / price)
        # the position after the buy, long or (when covering) what is left short, stays within the cap
        caps.append(limits.max_position_value / price - held)
    else:
        caps.append(limits.max_position_value / price + held)
        if not limits.allow_short:
            caps.append(max(held, Decimal(0)))
    qty = floor_to(min(caps), lot)
    return qty if qty > 0 else None


def evaluate(snapshot: RiskSnapshot, limits: RiskLimits) -> RiskDecision:
    """Run every rule; approve only if all pass. A size-only refusal carries a suggested quantity."""
    with localcontext() as ctx:
        ctx.prec = 80  # an absurd quantity is refused by a rule, not by a decimal overflow
        checks = tuple(rule(snapshot, limits) for rule in RULES)
        failed_rules = {c.rule for c in checks if not c.passed}
        suggestion = suggest_quantity(snapshot, limits) if failed_rules and failed_rules <= _SIZE_RULES else None
    return RiskDecision(approved=not failed_rules, checks=checks, suggested_quantity=suggestion)
