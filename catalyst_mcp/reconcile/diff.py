"""diff(book, broker snapshot, in-flight orders, tolerance) -> SyncPlan: what must change for the book to
equal the broker, and the row operations that do it. Pure.

``diff`` takes rows as they are; ``diff_sides`` takes both sides already keyed by canonical symbol (normalised
once, where the rows entered: ``reconcile.sides``), which is what a sync does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Final

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
from catalyst_mcp.reconcile.sides import BookRow, BookSide, BrokerRow, BrokerSide, book_side, broker_side

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
    long_ = PositionSide.LONG
    rows = ((p.position_id, p.symbol, p.side is long_, p.quantity, p.avg_entry_price) for p in book)
    return diff_sides(
        book_side(market, rows),
        broker_side(market, broker),
        in_flight,
        tolerance,
        market=market,
        lot_size=lot_size,
    )


def diff_sides(
    book: BookSide,
    broker: BrokerSide,
    in_flight: Iterable[InFlight] = (),
    tolerance: Decimal = DEFAULT_PRICE_TOLERANCE,
    *,
    market: Market,
    lot_size: Callable[[str], Decimal] | None = None,
) -> SyncPlan:
    """``diff`` over sides already keyed by canonical symbol (``reconcile.sides``).

    One pass over the book drops every symbol held in one canonically spelled row on each side with the same
    quantity and an average price within the tolerance, with no order in flight: a few dict lookups and
    Decimal comparisons each, no allocation. Only the rest (the differences, folds, symbols in flight) are
    sorted and reconciled one by one, in symbol order.
    """
    working: dict[str, list[str]] = {}
    for order in in_flight:
        ids = working.setdefault(canonical_symbol(market, order.symbol) or order.symbol, [])
        if order.client_order_id not in ids:
            ids.append(order.client_order_id)

    held, remote = book.first, broker.first
    special = book.more.keys() | broker.more.keys() | working.keys()
    differing: list[str] = []
    for symbol, (_, stored, long_, quantity, avg) in held.items():
        there = remote.get(symbol)
        if there is None or (special and symbol in special) or stored != symbol:
            differing.append(symbol)
            continue
        _, target, target_avg = there
        if (quantity if long_ else -quantity) != target:
            differing.append(symbol)
            continue
        if avg != target_avg and price_drifted(avg, target_avg, tolerance):
            differing.append(symbol)
    differing += remote.keys() - held.keys()

    out = _Builder(lot_size, tolerance)
    for symbol in sorted(differing):
        rows = book.rows(symbol)
        if len(rows) > 1:
            rows.sort(key=_stored_order)
        out.reconcile(symbol, rows, broker.rows(symbol), working.get(symbol))
    return SyncPlan(
        changes=tuple(out.changes),
        book_size=len(held),
        folds=tuple(out.folds),
        skipped=tuple(out.skipped),
        unrecognised=tuple(sorted({*book.unrecognised, *broker.unrecognised})),
        closes=tuple(out.closes),
        updates=tuple(out.updates),
        inserts=tuple(out.inserts),
    )


def _stored_order(row: BookRow) -> tuple[str, int]:
    return row[1], row[0]


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

    def reconcile(self, symbol: str, rows: list[BookRow], remote: list[BrokerRow], orders: list[str] | None) -> None:
        if len(rows) == 1:  # the common case, kept cheap: one row, no folding arithmetic
            net = _signed(rows[0])
            book_avg: Decimal | None = rows[0][4]
        else:
            net = sum((_signed(r) for r in rows), Decimal(0))
            book_avg = _weighted_avg([(_signed(r), r[4]) for r in rows], net)
        target_avg: Decimal | None
        if len(remote) == 1:
            _, target, target_avg = remote[0]
        else:
            target = sum((b[1] for b in remote), Decimal(0))
            target_avg = _weighted_avg([(b[1], b[2]) for b in remote], target)
            if len(remote) > 1:
                self.folds.append(Fold(symbol, FoldSource.BROKER, tuple(b[0] for b in remote), target))
        if orders is not None:
            self.skipped.append(Skipped(symbol, net, target, tuple(orders)))
            return
        if target == 0:
            if rows:
                self._change(ChangeKind.PHANTOM, symbol, net, target, book_avg, target_avg)
                self.closes.extend(_close(r, PHANTOM_REASON) for r in rows)
            return
        assert target_avg is not None  # a non-zero total has an average
        side = PositionSide.LONG if target > 0 else PositionSide.SHORT
        if not rows:
            self._change(ChangeKind.MISSING, symbol, net, target, book_avg, target_avg)
            self.inserts.append(Insert(symbol, side, abs(target), target_avg))
            return
        keeper = rows[0] if len(rows) == 1 else _keeper(symbol, rows)
        folded = len(rows) > 1 or keeper[1] != symbol
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
            self.folds.append(Fold(symbol, FoldSource.BOOK, tuple(r[1] for r in rows), net))
            self.closes.extend(_close(r, duplicate_reason(symbol)) for r in rows if r is not keeper)
        if kind is not None:
            self._change(kind, symbol, net, target, book_avg, target_avg)
        # A broker that reports no average price (0) never overwrites ours.
        avg = target_avg if target_avg > 0 else (book_avg or keeper[4])
        if keeper[2] == (side is PositionSide.LONG):
            self.updates.append(Update(keeper[0], side, keeper[3], symbol, abs(target), avg))
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


def _signed(row: BookRow) -> Decimal:
    return row[3] if row[2] else -row[3]


def _keeper(symbol: str, rows: list[BookRow]) -> BookRow:
    """The row that stays open when several are folded: the canonically spelled one, else the oldest."""
    return next((r for r in rows if r[1] == symbol), None) or min(rows, key=lambda r: r[0])


def _close(row: BookRow, reason: str) -> Close:
    return Close(row[0], row[1], PositionSide.LONG if row[2] else PositionSide.SHORT, row[3], reason)
