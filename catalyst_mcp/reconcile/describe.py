"""One line per finding of a plan, for people (result details, audit rows) and its JSON form (sync_runs)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.reconcile.plan import Change, ChangeKind, Fold, FoldSource, Skipped, SyncPlan


def _qty(signed: Decimal) -> str:
    if signed == 0:
        return "none"
    return f"{'short' if signed < 0 else 'long'} {plain(abs(signed))}"


def _price(value: Decimal | None) -> str:
    return "unknown" if value is None or value <= 0 else plain(value)


def describe_change(change: Change, *, applied: bool) -> str:
    c = change
    if c.kind is ChangeKind.PHANTOM:
        what = f"{c.symbol}: in the book ({_qty(c.book_quantity)}) but not at the broker"
        action = "closed, without a P&L (no exit price is known)"
    elif c.kind is ChangeKind.MISSING:
        held = f"{_qty(c.broker_quantity)} @ {_price(c.broker_avg_price)}"
        what = f"{c.symbol}: at the broker ({held}) but not in the book"
        action = "added"
    elif c.kind is ChangeKind.SIDE:
        what = f"{c.symbol}: book {_qty(c.book_quantity)}, broker {_qty(c.broker_quantity)}"
        action = "closed and reopened on the broker's side"
    elif c.kind is ChangeKind.QUANTITY:
        what = f"{c.symbol}: book {_qty(c.book_quantity)}, broker {_qty(c.broker_quantity)}"
        action = "set to the broker's quantity and average price"
    else:
        what = (
            f"{c.symbol}: average price {_price(c.book_avg_price)} in the book, "
            f"{_price(c.broker_avg_price)} at the broker"
        )
        action = "set to the broker's"
    text = f"{what}: {action if applied else 'would be ' + action}"
    if c.odd_lot and c.lot_size is not None:
        text += f" (an odd lot: the board lot is {plain(c.lot_size)})"
    return text


def describe_fold(fold: Fold, *, applied: bool) -> str:
    spelled = ", ".join(fold.spellings)
    if fold.source is FoldSource.BROKER:
        return f"{fold.symbol}: the broker reports it as {spelled}; counted as one position ({_qty(fold.quantity)})"
    verb = "folded" if applied else "would be folded"
    if len(fold.spellings) == 1:
        return f"{fold.symbol}: the book row spelled {spelled} {'is' if applied else 'would be'} renamed {fold.symbol}"
    return f"{fold.symbol}: {len(fold.spellings)} open book rows ({spelled}) {verb} into one"


def describe_skip(skip: Skipped) -> str:
    orders = ", ".join(skip.orders)
    if skip.agrees:
        state = f"book and broker agree ({_qty(skip.book_quantity)})"
    else:
        state = f"book {_qty(skip.book_quantity)}, broker {_qty(skip.broker_quantity)}"
    return f"{skip.symbol}: order {orders} is in flight; {state}; its fills move the book, left for the next sync"


def describe_changes(plan: SyncPlan, *, applied: bool) -> list[str]:
    """One line per change to the book (these are audited one by one)."""
    return [describe_change(c, applied=applied) for c in plan.changes] + [
        describe_fold(f, applied=applied) for f in plan.folds
    ]


def describe_rest(plan: SyncPlan) -> list[str]:
    """One line per symbol left alone."""
    lines = [describe_skip(s) for s in plan.skipped]
    return lines + [f"{s}: not a symbol of this market; left alone" for s in plan.unrecognised]


def plan_json(plan: SyncPlan) -> list[dict[str, Any]]:
    """The plan as stored with its sync run."""

    def dec(value: Decimal | None) -> str | None:
        return None if value is None else plain(value)

    items: list[dict[str, Any]] = [
        {
            "kind": c.kind.value,
            "symbol": c.symbol,
            "book": plain(c.book_quantity),
            "broker": plain(c.broker_quantity),
            "book_avg": dec(c.book_avg_price),
            "broker_avg": dec(c.broker_avg_price),
        }
        for c in plan.changes
    ]
    items += [
        {"kind": "fold", "symbol": f.symbol, "source": f.source.value, "spellings": list(f.spellings)}
        for f in plan.folds
    ]
    items += [
        {
            "kind": "in_flight",
            "symbol": s.symbol,
            "book": plain(s.book_quantity),
            "broker": plain(s.broker_quantity),
            "orders": list(s.orders),
        }
        for s in plan.skipped
    ]
    items += [{"kind": "unrecognised", "symbol": s} for s in plan.unrecognised]
    return items
