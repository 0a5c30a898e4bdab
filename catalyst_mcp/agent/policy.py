"""Trading policies: what to buy and what to exit, from the tool results of one cycle. No I/O.

The agent reads the public tool contract, not the server's internals, so the views below are parsed
from tool results (decimals arrive as strings) rather than shared with the domain layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from catalyst_mcp.domain.decimals import floor_to, round_to
from catalyst_mcp.domain.enums import CycleMode, Market, OrderType, PositionSide, Side
from catalyst_mcp.markets.lots import table_lot
from catalyst_mcp.markets.symbols import canonical_symbol

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class AccountView:
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class HeldPosition:
    symbol: str
    side: PositionSide
    quantity: Decimal
    avg_entry_price: Decimal
    market_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None


@dataclass(frozen=True, slots=True)
class ScanCandidate:
    symbol: str
    price: Decimal
    change_pct: Decimal
    volume: Decimal
    relative_volume: Decimal
    score: Decimal


@dataclass(frozen=True, slots=True)
class QuoteView:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    lot_size: Decimal | None = None  # the board lot the server reports (get_quote)


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Everything a policy may look at in one cycle."""

    account: AccountView
    positions: tuple[HeldPosition, ...] = ()
    candidates: tuple[ScanCandidate, ...] = ()
    quotes: Mapping[str, QuoteView] = field(default_factory=dict)
    mode: CycleMode = CycleMode.TRADE


@dataclass(frozen=True, slots=True)
class TradeIdea:
    """An order the policy would like `check_risk` to approve, with the reason in words."""

    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    reason: str

    @property
    def is_exit(self) -> bool:
        return self.side is Side.SELL


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """Knobs of the rules policy. Fractions are fractions (0.05 is 5 %), money is in account currency."""

    max_new_positions: int = 2
    target_position_pct: Decimal = Decimal("0.05")
    max_position_value: Decimal = Decimal("10000")
    stop_loss_pct: Decimal = Decimal("0.03")
    take_profit_pct: Decimal = Decimal("0.06")
    min_score: Decimal = _ZERO
    tick: Decimal = Decimal("0.01")
    default_lot_size: Decimal | None = None  # None: an HK code's board lot from the maintained table, else 1
    lot_sizes: Mapping[str, Decimal] = field(default_factory=dict)
    entry_order_type: OrderType = OrderType.MARKET

    def lot_size(self, symbol: str) -> Decimal:
        found = self.lot_sizes.get(symbol, self.default_lot_size)
        if found is not None:
            return found
        return table_lot(Market.HK, symbol) if canonical_symbol(Market.HK, symbol) == symbol else Decimal(1)


class Policy(Protocol):
    """Turns one cycle's observations into trade ideas (rules today, Claude later)."""

    async def decide(self, context: PolicyContext) -> list[TradeIdea]: ...


@dataclass(frozen=True, slots=True)
class RulesPolicy:
    """Deterministic momentum entries with fixed stop-loss and take-profit exits."""

    params: PolicyParams = field(default_factory=PolicyParams)

    async def decide(self, context: PolicyContext) -> list[TradeIdea]:
        return propose(context, self.params)


def propose(context: PolicyContext, params: PolicyParams) -> list[TradeIdea]:
    """Exits first (by symbol), then entries by rank; in close mode, exits only."""
    ideas = exit_ideas(context, params)
    if context.mode is not CycleMode.CLOSE:
        ideas.extend(entry_ideas(context, params))
    return ideas


def lot_of(context: PolicyContext, params: PolicyParams, symbol: str) -> Decimal:
    """The board lot the server reported with the symbol's quote, else the parameters' own."""
    quote = context.quotes.get(symbol)
    if quote is not None and quote.lot_size is not None and quote.lot_size > _ZERO:
        return quote.lot_size
    return params.lot_size(symbol)


def exit_ideas(context: PolicyContext, params: PolicyParams) -> list[TradeIdea]:
    """Sell a whole long position whose price is at/below its stop or at/above its target; in close mode (the
    close-out before the session ends) every position is closed, a short bought back."""
    ideas: list[TradeIdea] = []
    closing_out = context.mode is CycleMode.CLOSE
    for position in sorted(context.positions, key=lambda p: p.symbol):
        long = position.side is PositionSide.LONG
        price = _mark(position, context.quotes.get(position.symbol))
        if closing_out:
            why = "close-out before the session ends"
        elif not long or price is None:
            continue
        elif position.stop_loss is not None and price <= position.stop_loss:
            why = f"stop loss hit: {_plain(price)} <= stop {_plain(position.stop_loss)}"
        elif position.take_profit is not None and price >= position.take_profit:
            why = f"take profit hit: {_plain(price)} >= target {_plain(position.take_profit)}"
        else:
            continue
        quantity = floor_to(position.quantity, lot_of(context, params, position.symbol))
        if quantity <= _ZERO:
            continue
        ideas.append(
            TradeIdea(
                symbol=position.symbol,
                side=Side.SELL if long else Side.BUY,
                quantity=quantity,
                order_type=OrderType.MARKET,
                limit_price=None,
                stop_loss=None,
                take_profit=None,
                reason=f"exit {_plain(quantity)} {position.symbol}: {why}",
            )
        )
    return ideas


def entry_ideas(context: PolicyContext, params: PolicyParams) -> list[TradeIdea]:
    """Buy the best-scoring quoted candidates not already held, sized to the target value."""
    held = {p.symbol for p in context.positions}
    target = min(context.account.equity * params.target_position_pct, params.max_position_value)
    budget = context.account.buying_power
    ideas: list[TradeIdea] = []
    for candidate in rank_candidates(context.candidates, params.min_score):
        if len(ideas) >= params.max_new_positions:
            break
        if candidate.symbol in held:
            continue
        price = _entry_price(context.quotes.get(candidate.symbol))
        if price is None:
            continue
        lot = lot_of(context, params, candidate.symbol)
        quantity = floor_to(max(min(target, budget), _ZERO) / price, lot)
        if quantity <= _ZERO:
            continue
        budget -= quantity * price
        is_limit = params.entry_order_type is OrderType.LIMIT
        limit_price = round_to(price, params.tick, ROUND_HALF_UP) if is_limit else None
        stop_loss = round_to(price * (1 - params.stop_loss_pct), params.tick, ROUND_HALF_UP)
        take_profit = round_to(price * (1 + params.take_profit_pct), params.tick, ROUND_HALF_UP)
        ideas.append(
            TradeIdea(
                symbol=candidate.symbol,
                side=Side.BUY,
                quantity=quantity,
                order_type=params.entry_order_type,
                limit_price=limit_price,
                stop_loss=stop_loss,
                take_profit=take_profit,
                reason=(
                    f"momentum: score {_plain(candidate.score)}, change {_plain(candidate.change_pct)}%, "
                    f"rel. volume {_plain(candidate.relative_volume)}; buy {_plain(quantity)} near "
                    f"{_plain(price)}, stop {_plain(stop_loss)}, target {_plain(take_profit)}"
                ),
            )
        )
        held.add(candidate.symbol)
    return ideas


def rank_candidates(candidates: Iterable[ScanCandidate], min_score: Decimal) -> list[ScanCandidate]:
    """Candidates scoring above `min_score`, best first; ties by symbol, so the order is total."""
    eligible = [c for c in candidates if c.score > min_score]
    return sorted(eligible, key=lambda c: (-c.score, c.symbol))


def _mark(position: HeldPosition, quote: QuoteView | None) -> Decimal | None:
    """The freshest price: the quote's last trade, else the book's mark."""
    if quote is not None and quote.last is not None and quote.last > _ZERO:
        return quote.last
    return position.market_price


def _entry_price(quote: QuoteView | None) -> Decimal | None:
    """What a buy would pay: the ask, else the last trade. No quote, no entry."""
    if quote is None:
        return None
    for price in (quote.ask, quote.last):
        if price is not None and price > _ZERO:
            return price
    return None


def _plain(value: Decimal) -> str:
    return format(value, "f")


# -- parsing tool results ------------------------------------------------------------------------


def parse_decimal(value: object) -> Decimal | None:
    """A decimal from a tool result (string or number); `None` for null or empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"not a decimal: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return number


def _required(row: Mapping[str, Any], key: str) -> Decimal:
    number = parse_decimal(row.get(key))
    if number is None:
        raise ValueError(f"missing {key}")
    return number


def parse_account(portfolio: Mapping[str, Any]) -> AccountView:
    account = portfolio["account"]
    return AccountView(
        cash=_required(account, "cash"),
        equity=_required(account, "equity"),
        buying_power=_required(account, "buying_power"),
        currency=str(account.get("currency", "")),
    )


def parse_positions(portfolio: Mapping[str, Any]) -> tuple[HeldPosition, ...]:
    return tuple(
        HeldPosition(
            symbol=str(row["symbol"]),
            side=PositionSide(str(row.get("side", "long")).lower()),
            quantity=_required(row, "quantity"),
            avg_entry_price=_required(row, "avg_entry_price"),
            market_price=parse_decimal(row.get("market_price")),
            stop_loss=parse_decimal(row.get("stop_loss")),
            take_profit=parse_decimal(row.get("take_profit")),
        )
        for row in portfolio.get("positions", [])
    )


def parse_candidates(scan: Mapping[str, Any]) -> tuple[ScanCandidate, ...]:
    return tuple(
        ScanCandidate(
            symbol=str(row["symbol"]),
            price=_required(row, "price"),
            change_pct=parse_decimal(row.get("change_pct")) or _ZERO,
            volume=parse_decimal(row.get("volume")) or _ZERO,
            relative_volume=parse_decimal(row.get("relative_volume")) or _ZERO,
            score=parse_decimal(row.get("score")) or _ZERO,
        )
        for row in scan.get("candidates", [])
    )


def parse_quote(quote: Mapping[str, Any]) -> QuoteView:
    return QuoteView(
        symbol=str(quote["symbol"]),
        bid=parse_decimal(quote.get("bid")),
        ask=parse_decimal(quote.get("ask")),
        last=parse_decimal(quote.get("last")),
        lot_size=parse_decimal(quote.get("lot_size")),
    )


def build_context(
    portfolio: Mapping[str, Any],
    scan: Mapping[str, Any] | None,
    quotes: Sequence[Mapping[str, Any]],
    mode: CycleMode = CycleMode.TRADE,
) -> PolicyContext:
    """A `PolicyContext` from the raw results of get_portfolio, scan_market and get_quote."""
    views = [parse_quote(q) for q in quotes]
    return PolicyContext(
        account=parse_account(portfolio),
        positions=parse_positions(portfolio),
        candidates=parse_candidates(scan) if scan is not None else (),
        quotes={q.symbol: q for q in views},
        mode=mode,
    )
