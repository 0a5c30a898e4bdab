"""The two sides of a diff, keyed by canonical symbol: each row's symbol is normalised once, where the row
enters (the book's read, the broker's snapshot), so the diff itself compares keys and never normalises. Pure.

A side keeps the first row of each symbol in ``first`` and any further rows of that symbol (two book rows
under different spellings, one position reported twice by a broker) in ``more``: the common case, one row
per symbol, costs one dict entry and no list. Rows are tuples of atoms (ints, strings, bools, Decimals), which
the garbage collector stops tracking, so a side of 100,000 rows does not make every collection scan it.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.models import BrokerPosition
from catalyst_mcp.markets.symbols import canonicaliser

# A book row as the diff needs it: position id, symbol as stored, long (else short), quantity (positive, as
# stored), average price.
BookRow = tuple[int, str, bool, Decimal, Decimal]
# A broker row: symbol as reported, signed quantity (never 0 in a side), average price.
BrokerRow = tuple[str, Decimal, Decimal]

R = TypeVar("R")


@dataclass(slots=True)
class Keyed(Generic[R]):
    """Rows keyed by canonical symbol, and the symbols that are not symbols of the market."""

    first: dict[str, R] = field(default_factory=dict)
    more: dict[str, list[R]] = field(default_factory=dict)  # the second and later rows of a symbol
    unrecognised: list[str] = field(default_factory=list)

    def rows(self, symbol: str) -> list[R]:
        """Every row of ``symbol``, the first one first; [] when there is none."""
        first = self.first.get(symbol)
        if first is None:
            return []
        return [first, *self.more.get(symbol, ())]

    def __len__(self) -> int:
        """The number of symbols."""
        return len(self.first)


BookSide = Keyed[BookRow]
BrokerSide = Keyed[BrokerRow]


def book_side(
    market: Market, rows: Iterable[BookRow], into: BookSide | None = None, known: Container[str] = ()
) -> BookSide:
    """The book's open rows (each row object once: one per position) keyed by canonical symbol, added to
    ``into`` when given (a book read in chunks). ``known`` holds symbols already known to be canonical (the
    broker side's keys): a row stored under one of them is not normalised again."""
    canon = canonicaliser(market)
    side = BookSide() if into is None else into
    first, unrecognised = side.first, side.unrecognised
    for row in rows:
        stored = row[1]
        symbol = stored if stored in known else canon(stored)
        if symbol is None:
            unrecognised.append(stored)
        elif first.setdefault(symbol, row) is not row:  # one dict operation: stored, or the symbol's first
            side.more.setdefault(symbol, []).append(row)
    return side


def broker_side(market: Market, positions: Iterable[BrokerPosition]) -> BrokerSide:
    """A broker snapshot keyed by canonical symbol, folded in as it is iterated; rows of quantity 0 count as
    absent (and are not looked at further)."""
    canon = canonicaliser(market)
    side = BrokerSide()
    first, unrecognised = side.first, side.unrecognised
    for position in positions:
        raw, quantity = position.symbol, position.quantity
        if quantity == 0:
            continue
        symbol = canon(raw)
        if symbol is None:
            unrecognised.append(raw)
        elif first.setdefault(symbol, row := (raw, quantity, position.avg_entry_price)) is not row:
            side.more.setdefault(symbol, []).append(row)
    return side
