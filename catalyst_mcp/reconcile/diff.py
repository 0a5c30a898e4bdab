"""diff(book, broker snapshot, in-flight orders, tolerance) -> SyncPlan: what must change for the book to
equal the broker, and the row operations that do it. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.models import BrokerPosition, Position
from catalyst_mcp.markets.symbols import canonical_symbol
from catalyst_mcp.reconcile.plan import (
    Change,
    ChangeKind,
    Close,
    Fold,
    FoldSource,
    InFlight,
    Insert,
    Skipped,
    SyncPlan,
    Update,
)

# Average prices closer than this share of the broker's price are the same (brokers round them).
DEFAULT_PRICE_TOLERANCE: Final = Decimal("0.0001")

PHANTOM_REASON: Final = "sync: not at the broker"
SIDE_REASON: Final = "sync: the broker holds the other side"


def duplicate_reason(symbol: str) -> str:
    return f"sync: duplicate row of {symbol}, folded"


def diff(
    book: Iterable[Position],
    broker: Iterable[BrokerPosition],
    in_flight: Iterable[InFlight] = (),
    tolerance: Decimal = DEFAULT_PRICE_TOLERANCE,
    *,
    market: Market,
    lot_size: Callable[[str], Decimal] | None = None,
) -> SyncPlan:
    """Compare the book with the broker symbol by symbol, after normalising both sides' symbols.

    Quantities are signed Decimals compared exactly (fractions included); zero-quantity broker rows count as
    absent. Several book rows or broker rows for one symbol are folded into one and reported. Symbols with a
    working order are left alone (their fills move the book). ``tolerance`` is the relative average-price
    difference still considered equal.
    """
    unrecognised: list[str] = []
    rows_by: dict[str, list[Position]] = {}
    for p in book:
        symbol = canonical_symbol(market, p.symbol)
        if symbol is None:
            unrecognised.append(p.symbol)
        else:
            rows_by.setdefault(symbol, []).append(p)
    remote_by: dict[str, list[BrokerPosition]] = {}
    for b in broker:
        if b.quantity == 0:
            continue
        symbol = canonical_symbol(market, b.symbol)
        if symbol is None:
            unrecognised.append(b.symbol)
        else:
            remote_by.setdefault(symbol, []).append(b)
    working: dict[str, list[str]] = {}
    for order in in_flight:
        ids = working.setdefault(canonical_symbol(market, order.symbol) or order.symbol, [])
        if order.client_order_id not in ids:
            ids.append(order.client_order_id)

    out = _Builder(lot_size, tolerance)
    none: list[Any] = []
    for symbol in sorted(rows_by.keys() | remote_by.keys()):
        out.reconcile(symbol, rows_by.get(symbol, none), remote_by.get(symbol, none), working.get(symbol))
    return SyncPlan(
        changes=tuple(out.changes),
        book_size=len(rows_by),
        folds=tuple(out.folds),
        skipped=tuple(out.skipped),
        unrecognised=tuple(sorted(set(unrecognised))),
        closes=tuple(out.closes),
        updates=tuple(out.updates),
        inserts=tuple(out.inserts),
    )


def looks_like_outage(plan: SyncPlan, share: Decimal, min_positions: int) -> bool:
    """True when the plan would close every position of a non-empty book (an empty answer, whatever the
    book's size), or more than ``share`` of it and at least ``min_positions``."""
    closing = len(plan.of(ChangeKind.PHANTOM))
    if plan.book_size == 0 or closing == 0:
        return False
    if closing == plan.book_size:
        return True
    return closing >= min_positions and Decimal(closing) / Decimal(plan.book_size) > share


def price_drifted(book_avg: Decimal | None, broker_avg: Decimal, tolerance: Decimal) -> bool:
    """True when both prices are known and differ by more than ``tolerance`` of the broker's."""
    if book_avg is None or broker_avg <= 0:
        return False
    return abs(book_avg - broker_avg) > tolerance * broker_avg


def _weighted_avg(items: Sequence[tuple[Decimal, Decimal]], net: Decimal) -> Decimal | None:
    """The average price of the (signed quantity, price) items on the side of ``net``."""
    same = [(abs(q), price) for q, price in items if q != 0 and (q > 0) == (net > 0)]
    total = sum((q for q, _ in same), Decimal(0))
    if net == 0 or total == 0:
        return None
    if len(same) == 1:
        return same[0][1]
    return sum((q * price for q, price in same), Decimal(0)) / total


class _Builder:
    def __init__(self, lot_size: Callable[[str], Decimal] | None, tolerance: Decimal) -> None:
        self.lot_size = lot_size
        self.tolerance = tolerance
        self.changes: list[Change] = []
        self.folds: list[Fold] = []
        self.skipped: list[Skipped] = []
        self.closes: list[Close] = []
        self.updates: list[Update] = []
        self.inserts: list[Insert] = []

    def reconcile(
        self, symbol: str, rows: list[Position], remote: list[BrokerPosition], orders: list[str] | None
    ) -> None:
        if len(rows) == 1:  # the common case, kept cheap: one row, no folding arithmetic
            only = rows[0]
            net = only.quantity if only.side is PositionSide.LONG else -only.quantity
            book_avg: Decimal | None = only.avg_entry_price
        else:
            net = sum((p.signed_quantity for p in rows), Decimal(0))
            book_avg = _weighted_avg([(p.signed_quantity, p.avg_entry_price) for p in rows], net)
        target_avg: Decimal | None
        if len(remote) == 1:
            target, target_avg = remote[0].quantity, remote[0].avg_entry_price
        else:
            target = sum((b.quantity for b in remote), Decimal(0))
            target_avg = _weighted_avg([(b.quantity, b.avg_entry_price) for b in remote], target)
            if len(remote) > 1:
                self.folds.append(Fold(symbol, FoldSource.BROKER, tuple(b.symbol for b in remote), target))
        if orders is not None:
            self.skipped.append(Skipped(symbol, net, target, tuple(orders)))
            return
        if target == 0:
            if rows:
                self._change(ChangeKind.PHANTOM, symbol, net, target, book_avg, target_avg)
                self.closes.extend(_close(p, PHANTOM_REASON) for p in rows)
            return
        assert target_avg is not None  # a non-zero total has an average
        side = PositionSide.LONG if target > 0 else PositionSide.SHORT
        if not rows:
            self._change(ChangeKind.MISSING, symbol, net, target, book_avg, target_avg)
            self.inserts.append(Insert(symbol, side, abs(target), target_avg))
            return
        keeper = rows[0] if len(rows) == 1 else _keeper(symbol, rows)
        folded = len(rows) > 1 or keeper.symbol != symbol
        if net != 0 and (net > 0) != (target > 0):
            kind: ChangeKind | None = ChangeKind.SIDE
        elif net != target:
            kind = ChangeKind.QUANTITY
        elif price_drifted(book_avg, target_avg, self.tolerance):
            kind = ChangeKind.PRICE
        elif not folded:
            return  # equal
        else:
            kind = None
        if folded:
            self.folds.append(Fold(symbol, FoldSource.BOOK, tuple(p.symbol for p in rows), net))
            self.closes.extend(_close(p, duplicate_reason(symbol)) for p in rows if p is not keeper)
        if kind is not None:
            self._change(kind, symbol, net, target, book_avg, target_avg)
        # A broker that reports no average price (0) never overwrites ours.
        avg = target_avg if target_avg > 0 else (book_avg or keeper.avg_entry_price)
        if keeper.side is side:
            self.updates.append(Update(keeper.position_id, side, keeper.quantity, symbol, abs(target), avg))
        else:
            self.closes.append(_close(keeper, SIDE_REASON))
            self.inserts.append(Insert(symbol, side, abs(target), avg))

    def _change(
        self,
        kind: ChangeKind,
        symbol: str,
        book: Decimal,
        broker: Decimal,
        book_avg: Decimal | None,
        broker_avg: Decimal | None,
    ) -> None:
        lot = self.lot_size(symbol) if self.lot_size is not None and broker != 0 else None
        self.changes.append(Change(kind, symbol, book, broker, book_avg, broker_avg, lot))


def _keeper(symbol: str, rows: list[Position]) -> Position:
    """The row that stays open when several are folded: the canonically spelled one, else the oldest."""
    return next((p for p in rows if p.symbol == symbol), None) or min(rows, key=lambda p: p.position_id)


def _close(p: Position, reason: str) -> Close:
    return Close(p.position_id, p.symbol, p.side, p.quantity, reason)
