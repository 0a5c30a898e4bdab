"""diff(book, broker snapshot) -> SyncPlan: what must change for the book to equal the broker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from catalyst_mcp.domain.enums import PositionSide
from catalyst_mcp.domain.models import BrokerPosition, Position


class ChangeKind(StrEnum):
    PHANTOM = "phantom"  # in the book, not at the broker: close it
    MISSING = "missing"  # at the broker, not in the book: add it
    QUANTITY = "quantity"  # both, different size or side: take the broker's


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    symbol: str
    book_quantity: Decimal  # signed; 0 when absent
    broker_quantity: Decimal  # signed; 0 when absent
    broker_avg_price: Decimal | None

    @property
    def side(self) -> PositionSide:
        return PositionSide.SHORT if self.broker_quantity < 0 else PositionSide.LONG


@dataclass(frozen=True, slots=True)
class SyncPlan:
    changes: tuple[Change, ...]
    book_size: int

    def of(self, kind: ChangeKind) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind is kind)

    @property
    def is_empty(self) -> bool:
        return not self.changes


def diff(book: Iterable[Position], broker: Iterable[BrokerPosition]) -> SyncPlan:
    """Compare signed quantities symbol by symbol; zero-quantity broker rows count as absent."""
    held = {p.symbol: p for p in book}
    remote = {b.symbol: b for b in broker if b.quantity != 0}
    changes: list[Change] = []
    for symbol in sorted(held.keys() | remote.keys()):
        mine, theirs = held.get(symbol), remote.get(symbol)
        if mine is not None and theirs is None:
            changes.append(Change(ChangeKind.PHANTOM, symbol, mine.signed_quantity, Decimal(0), None))
        elif mine is None and theirs is not None:
            changes.append(Change(ChangeKind.MISSING, symbol, Decimal(0), theirs.quantity, theirs.avg_entry_price))
        elif mine is not None and theirs is not None and mine.signed_quantity != theirs.quantity:
            changes.append(
                Change(ChangeKind.QUANTITY, symbol, mine.signed_quantity, theirs.quantity, theirs.avg_entry_price)
            )
    return SyncPlan(tuple(changes), len(held))


def looks_like_outage(plan: SyncPlan, share: Decimal, min_positions: int) -> bool:
    """True when the plan would close more than ``share`` of the book and at least ``min_positions``."""
    closing = len(plan.of(ChangeKind.PHANTOM))
    if plan.book_size == 0 or closing < min_positions:
        return False
    return Decimal(closing) / Decimal(plan.book_size) > share
