"""evaluate(snapshot, limits) -> RiskDecision: every rule runs, every failure is reported."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal, localcontext

from catalyst_mcp.domain.decimals import floor_to
from catalyst_mcp.domain.enums import Side
from catalyst_mcp.risk import rules as r
from catalyst_mcp.risk.limits import RiskLimits
from catalyst_mcp.risk.rules import Check, Rule
from catalyst_mcp.risk.snapshot import OpenOrder, RecentOrder, Reservation, RiskSnapshot


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    checks: tuple[Check, ...]
    suggested_quantity: Decimal | None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.message for c in self.checks if not c.passed)

    @property
    def failed_rules(self) -> frozenset[str]:
        return frozenset(c.rule for c in self.checks if not c.passed)


RULES: tuple[Rule, ...] = (
    r.symbol_tradable,
    r.cycle_mode,
    r.symbol_lists,
    r.trading_state,
    r.market_open,
    r.entry_cutoff,
    r.book_reconciled,
    r.lot_size,
    r.max_order_shares,
    r.long_only,
    r.quote_fresh,
    r.price_collar,
    r.min_order_value,
    r.max_position_value,
    r.concentration,
    r.max_open_positions,
    r.buying_power,
    r.daily_loss,
    r.stop_loss,
    r.take_profit,
    r.reward_risk,
    r.max_loss_per_trade,
    r.duplicate_order,
    r.order_rate,
)

# At execution every rule runs again on a fresh snapshot taken under the execution lane (the book, working
# orders, other approvals, prices and the state may have moved since the approval), plus the price drift. The
# approval being executed is not among the snapshot's reservations, so it is not counted twice.
RECHECK_RULES: tuple[Rule, ...] = (*RULES, r.price_drift)

# Rules that a smaller quantity can satisfy: a refusal by these alone carries a suggested quantity.
SIZE_RULES = frozenset(
    {"max_order_shares", "long_only", "max_position_value", "concentration", "buying_power", "max_loss_per_trade"}
)


def suggest_quantity(s: RiskSnapshot, limits: RiskLimits) -> Decimal | None:
    """The largest whole-lot quantity the size rules allow, or None when not even one lot fits."""
    price, lot = s.reference_price, s.lot_size
    if price is None or lot is None or price <= 0:
        return None
    held, equity, buy = s.held, s.account.equity, s.intent.side is Side.BUY
    # The position after the order, long (buy) or short (sell), stays within the value caps.
    value_cap = min(limits.max_position_value, max(equity, Decimal(0)) * limits.max_position_pct_of_equity / 100)
    caps = [limits.max_order_shares, (value_cap / price - held) if buy else (value_cap / price + held)]
    if buy:
        caps.append((s.account.buying_power - s.reserved_by_open_buys) / price)
    elif not limits.allow_short:
        caps.append(max(held, Decimal(0)))
    stop = s.intent.stop_loss
    if stop is not None and stop != price and s.is_entry:
        caps.append(equity * limits.max_loss_per_trade_pct / 100 / abs(price - stop))
    qty = floor_to(min(caps), lot)
    if qty <= 0 or (s.is_entry and qty * price < limits.min_order_value):
        return None
    return qty


def _oversold(s: RiskSnapshot, limits: RiskLimits) -> Decimal | None:
    """A sell beyond the shares available also reads as a short entry to the entry rules (a stop required,
    …): the shares available are suggested when selling just those passes every rule."""
    quantity = suggest_quantity(s, limits)
    if quantity is None or quantity == s.intent.quantity:
        return None
    smaller = replace(s, intent=replace(s.intent, quantity=quantity))
    return quantity if all(rule(smaller, limits).passed for rule in RULES) else None


def evaluate(snapshot: RiskSnapshot, limits: RiskLimits) -> RiskDecision:
    """Run every rule; approve only if all pass. A size-only refusal carries a suggested quantity."""
    with localcontext() as ctx:
        ctx.prec = 80  # an absurd quantity is refused by a rule, not by a decimal overflow
        checks = tuple(rule(snapshot, limits) for rule in RULES)
        failed = {c.rule for c in checks if not c.passed}
        if failed and failed <= SIZE_RULES:
            suggestion = suggest_quantity(snapshot, limits)
        elif "long_only" in failed:
            suggestion = _oversold(snapshot, limits)
        else:
            suggestion = None
    return RiskDecision(approved=not failed, checks=checks, suggested_quantity=suggestion)


def recheck(snapshot: RiskSnapshot, limits: RiskLimits) -> tuple[Check, ...]:
    """The failed re-checks of an approved intent against a fresh snapshot (empty: send it)."""
    with localcontext() as ctx:
        ctx.prec = 80
        return tuple(c for c in (rule(snapshot, limits) for rule in RECHECK_RULES) if not c.passed)


__all__ = [
    "RECHECK_RULES",
    "RULES",
    "Check",
    "OpenOrder",
    "RecentOrder",
    "Reservation",
    "RiskDecision",
    "RiskSnapshot",
    "evaluate",
    "recheck",
]
