"""The value types of reconciliation: what differs (changes), and the row operations that fix it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from catalyst_mcp.domain.enums import PositionSide


class ChangeKind(StrEnum):
    PHANTOM = "phantom"  # in the book, not at the broker: close it
    MISSING = "missing"  # at the broker, not in the book: add it
    QUANTITY = "quantity"  # both, same side, different size: take the broker's
    SIDE = "side"  # long in one, short in the other: close ours, open the broker's
    PRICE = "price"  # same position, average price apart by more than the tolerance


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    symbol: str  # canonical
    book_quantity: Decimal  # signed; 0 when absent
    broker_quantity: Decimal  # signed; 0 when absent
    book_avg_price: Decimal | None = None
    broker_avg_price: Decimal | None = None
    lot_size: Decimal | None = None

    @property
    def side(self) -> PositionSide:
        """The side the book holds afterwards (the broker's)."""
        return PositionSide.SHORT if self.broker_quantity < 0 else PositionSide.LONG

    @property
    def odd_lot(self) -> bool:
        """The broker's quantity is not a whole number of board lots (allowed, but worth saying)."""
        lot = self.lot_size
        return lot is not None and lot > 0 and self.broker_quantity % lot != 0


class FoldSource(StrEnum):
    BOOK = "book"  # several open rows (or a non-canonical spelling) in the book for one symbol
    BROKER = "broker"  # the broker reported one symbol under several spellings


@dataclass(frozen=True, slots=True)
class Fold:
    symbol: str  # canonical
    source: FoldSource
    spellings: tuple[str, ...]  # the symbols as stored or reported, one per row
    quantity: Decimal  # the signed total


@dataclass(frozen=True, slots=True)
class InFlight:
    """A working order: its symbol is reconciled from the order's fills, not from the snapshot."""

    symbol: str
    client_order_id: str


@dataclass(frozen=True, slots=True)
class Skipped:
    symbol: str
    book_quantity: Decimal
    broker_quantity: Decimal
    orders: tuple[str, ...]  # client order ids

    @property
    def agrees(self) -> bool:
        return self.book_quantity == self.broker_quantity


# --- row operations: what a sync does to the positions table, in this order -----------------------------


@dataclass(frozen=True, slots=True)
class Close:
    position_id: int
    symbol: str  # as stored
    side: PositionSide  # as stored: the update only applies if the row is unchanged
    quantity: Decimal  # as stored
    reason: str


@dataclass(frozen=True, slots=True)
class Update:
    position_id: int
    side: PositionSide  # as stored (an update never changes the side)
    from_quantity: Decimal  # as stored
    symbol: str  # canonical: a row stored under another spelling is renamed
    quantity: Decimal
    avg_entry_price: Decimal


@dataclass(frozen=True, slots=True)
class Insert:
    symbol: str
    side: PositionSide
    quantity: Decimal
    avg_entry_price: Decimal


@dataclass(frozen=True, slots=True)
class SyncPlan:
    changes: tuple[Change, ...]
    book_size: int  # open positions in the book, one per canonical symbol
    folds: tuple[Fold, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    unrecognised: tuple[str, ...] = ()  # symbols that are not symbols of this market: left alone
    closes: tuple[Close, ...] = ()
    updates: tuple[Update, ...] = ()
    inserts: tuple[Insert, ...] = ()

    def of(self, kind: ChangeKind) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind is kind)

    @property
    def has_operations(self) -> bool:
        return bool(self.closes or self.updates or self.inserts)

    @property
    def is_empty(self) -> bool:
        """Nothing to change in the book."""
        return not self.changes and not self.has_operations

    def without_changes(self) -> SyncPlan:
        """The same findings with nothing to apply (a refused run)."""
        return SyncPlan((), self.book_size, (), self.skipped, self.unrecognised)
