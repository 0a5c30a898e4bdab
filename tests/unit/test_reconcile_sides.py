"""The diff at scale: both sides keyed by canonical symbol where their rows enter (reconcile.sides), and the
fast diff over them equal to the plain definition — normalise every row, group by symbol, visit every symbol
in order — on books in any spelling, with duplicates, rows of quantity 0, foreign symbols and orders in flight.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.models import BrokerPosition, Position
from catalyst_mcp.markets.symbols import canonical_symbol, canonicaliser
from catalyst_mcp.reconcile.diff import (
    PHANTOM_REASON,
    SIDE_REASON,
    diff,
    diff_sides,
    duplicate_reason,
    price_drifted,
)
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
from catalyst_mcp.reconcile.sides import book_side, broker_side

D = Decimal
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT

SPELLINGS = {
    Market.US: {
        "AAPL": ["AAPL", "aapl", " AAPL"],
        "BRK.B": ["BRK.B", "BRK-B", "brk/b"],
        "KO": ["KO"],
        "MSFT": ["MSFT", "msft"],
        "TSLA": ["TSLA"],
        "ÄPFEL": ["ÄPFEL"],  # letters, not a US ticker: unrecognised
        "AAPL240119C00190000": ["AAPL240119C00190000"],  # an option: unrecognised
    },
    Market.HK: {
        "00700": ["00700", "700", "0700", "HK.00700", "0700.HK"],
        "00005": ["00005", "5", "0005.HK"],
        "00670": ["00670", "670"],
        "09988": ["09988", "HK.09988"],
        "00000": ["00000"],  # not a code: unrecognised
        "AAPL": ["AAPL"],  # not a code: unrecognised
    },
}
quantities = st.decimals(min_value=D("-300"), max_value=D("300"), places=2).filter(lambda q: q != 0)
prices = st.sampled_from([D("0"), D("9.5"), D("10"), D("10.0004"), D("10.01"), D("380.2")])


# --- the plain definition -----------------------------------------------------------------------------------


def plain_diff(
    book: Sequence[Position],
    broker: Sequence[BrokerPosition],
    in_flight: Sequence[InFlight],
    tolerance: Decimal,
    market: Market,
    lot_size: Callable[[str], Decimal] | None,
) -> SyncPlan:
    """Every row normalised, grouped by symbol (book rows by stored symbol, then id; broker rows as reported),
    every symbol visited in order."""

    def canon(raw: str) -> str | None:
        return canonical_symbol(market, raw)

    def signed(p: Position) -> Decimal:
        return p.quantity if p.side is LONG else -p.quantity

    def average(items: list[tuple[Decimal, Decimal]], net: Decimal) -> Decimal | None:
        same = [(abs(q), a) for q, a in items if q != 0 and (q > 0) == (net > 0)]
        total = sum((q for q, _ in same), D(0))
        if net == 0 or total == 0:
            return None
        return same[0][1] if len(same) == 1 else sum((q * a for q, a in same), D(0)) / total

    def close(p: Position, reason: str) -> Close:
        return Close(p.position_id, p.symbol, p.side, p.quantity, reason)

    unrecognised = {p.symbol for p in book if canon(p.symbol) is None}
    unrecognised |= {b.symbol for b in broker if b.quantity != 0 and canon(b.symbol) is None}
    held: dict[str, list[Position]] = {}
    for p in sorted(book, key=lambda p: (p.symbol, p.position_id)):
        if (code := canon(p.symbol)) is not None:
            held.setdefault(code, []).append(p)
    remote: dict[str, list[BrokerPosition]] = {}
    for b in broker:
        if b.quantity != 0 and (code := canon(b.symbol)) is not None:
            remote.setdefault(code, []).append(b)
    flying: dict[str, list[str]] = {}
    for o in in_flight:
        ids = flying.setdefault(canon(o.symbol) or o.symbol, [])
        if o.client_order_id not in ids:
            ids.append(o.client_order_id)

    changes: list[Change] = []
    folds: list[Fold] = []
    skipped: list[Skipped] = []
    closes: list[Close] = []
    updates: list[Update] = []
    inserts: list[Insert] = []

    def change(
        kind: ChangeKind, code: str, net: Decimal, target: Decimal, a: Decimal | None, b: Decimal | None
    ) -> None:
        lot = lot_size(code) if lot_size is not None and target != 0 else None
        changes.append(Change(kind, code, net, target, a, b, lot))

    for code in sorted(held.keys() | remote.keys()):
        rows, reported = held.get(code, []), remote.get(code, [])
        net = sum((signed(p) for p in rows), D(0))
        book_avg = average([(signed(p), p.avg_entry_price) for p in rows], net)
        target = sum((b.quantity for b in reported), D(0))
        target_avg = average([(b.quantity, b.avg_entry_price) for b in reported], target)
        if len(reported) > 1:
            folds.append(Fold(code, FoldSource.BROKER, tuple(b.symbol for b in reported), target))
        if code in flying:
            skipped.append(Skipped(code, net, target, tuple(flying[code])))
            continue
        if target == 0:
            if rows:
                change(ChangeKind.PHANTOM, code, net, target, book_avg, target_avg)
                closes.extend(close(p, PHANTOM_REASON) for p in rows)
            continue
        assert target_avg is not None
        side = LONG if target > 0 else SHORT
        if not rows:
            change(ChangeKind.MISSING, code, net, target, book_avg, target_avg)
            inserts.append(Insert(code, side, abs(target), target_avg))
            continue
        keeper = next((p for p in rows if p.symbol == code), min(rows, key=lambda p: p.position_id))
        folded = len(rows) > 1 or keeper.symbol != code
        kind: ChangeKind | None = None
        if net != 0 and (net > 0) != (target > 0):
            kind = ChangeKind.SIDE
        elif net != target:
            kind = ChangeKind.QUANTITY
        elif price_drifted(book_avg, target_avg, tolerance):
            kind = ChangeKind.PRICE
        elif not folded:
            continue
        if folded:
            folds.append(Fold(code, FoldSource.BOOK, tuple(p.symbol for p in rows), net))
            closes.extend(close(p, duplicate_reason(code)) for p in rows if p is not keeper)
        if kind is not None:
            change(kind, code, net, target, book_avg, target_avg)
        avg = target_avg if target_avg > 0 else (book_avg or keeper.avg_entry_price)
        if keeper.side is side:
            updates.append(Update(keeper.position_id, side, keeper.quantity, code, abs(target), avg))
        else:
            closes.append(close(keeper, SIDE_REASON))
            inserts.append(Insert(code, side, abs(target), avg))
    return SyncPlan(
        tuple(changes),
        len(held),
        tuple(folds),
        tuple(skipped),
        tuple(sorted(unrecognised)),
        tuple(closes),
        tuple(updates),
        tuple(inserts),
    )


# --- cases -------------------------------------------------------------------------------------------------

Case = tuple[Market, list[Position], list[BrokerPosition], list[InFlight], Decimal]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    market = draw(st.sampled_from([Market.US, Market.HK]))
    spellings = SPELLINGS[market]
    codes = sorted(spellings)
    # The unique index allows one open row per stored spelling, so a symbol has one row or, rarely, several.
    stored = draw(st.lists(st.sampled_from([s for c in codes for s in spellings[c]]), unique=True, max_size=10))
    ids = draw(st.permutations(range(1, len(stored) + 1)))
    book = []
    for pid, name in zip(ids, stored, strict=True):
        q = draw(quantities)
        book.append(Position(pid, name, LONG if q > 0 else SHORT, abs(q), draw(prices.filter(bool)), None, None, NOW))
    broker = [
        BrokerPosition(draw(st.sampled_from(spellings[code])), draw(quantities | st.just(D(0))), draw(prices))
        for code in draw(st.lists(st.sampled_from(codes), max_size=8))  # repeats: one code reported twice
    ]
    flying = [
        InFlight(draw(st.sampled_from(spellings[code])), f"cat-{i % 2}")
        for i, code in enumerate(draw(st.lists(st.sampled_from(codes), max_size=3)))
    ]
    tolerance = draw(st.sampled_from([D("0.0001"), D("0"), D("0.01")]))
    return market, book, broker, flying, tolerance


def lots(symbol: str) -> Decimal:
    return D(100) if symbol[:1].isdigit() else D(1)


@settings(max_examples=400, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**16))
def test_the_fast_diff_equals_the_plain_definition_whatever_the_order_of_the_book(case: Case, seed: int) -> None:
    market, book, broker, flying, tolerance = case
    expected = plain_diff(book, broker, flying, tolerance, market, lots)
    shuffled = list(book)
    random.Random(seed).shuffle(shuffled)
    assert diff(shuffled, broker, flying, tolerance, market=market, lot_size=lots) == expected


def test_the_fast_diff_equals_the_plain_definition_on_a_large_book_with_every_kind() -> None:
    """The shape of bench/sync.py, small: every tenth position differs, in five ways."""
    book, broker = [], []
    for i in range(2_000):
        symbol = "".join(chr(65 + (i // 26**k) % 26) for k in (3, 2, 1, 0))
        q, p = D(10 + i % 90), D(100) + D(i % 50) / 4
        kind = i % 50 if i % 10 == 0 else None
        if kind != 10:
            book.append(Position(i + 1, symbol, LONG, q, p, None, None, NOW))
        if kind != 0:
            quantity = q + 5 if kind == 20 else -q if kind == 30 else q
            broker.append(BrokerPosition(symbol, quantity, p + 1 if kind == 40 else p))
    plan = diff(book, broker, market=Market.US, lot_size=lots)
    assert plan == plain_diff(book, broker, [], D("0.0001"), Market.US, lots)
    assert {k: len(plan.of(k)) for k in ChangeKind} == {k: 40 for k in ChangeKind}
    assert (len(plan.closes), len(plan.updates), len(plan.inserts)) == (80, 80, 80)


# --- normalised where rows enter ---------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(market=st.sampled_from([Market.US, Market.HK]), raw=st.text(max_size=8) | st.from_regex(r"[A-Z0-9.]{1,7}"))
def test_the_fast_canonical_form_is_the_canonical_form(market: Market, raw: str) -> None:
    assert canonicaliser(market)(raw) == canonical_symbol(market, raw)


def test_the_book_side_keys_rows_by_canonical_symbol_and_keeps_every_row() -> None:
    rows = [(1, "00700", True, D(100), D(380)), (2, "700", False, D(200), D(381)), (3, "AAPL", True, D(1), D(9))]
    side = book_side(Market.HK, rows)
    assert side.first == {"00700": rows[0]} and side.more == {"00700": [rows[1]]}
    assert side.rows("00700") == rows[:2] and side.rows("00005") == [] and side.unrecognised == ["AAPL"]
    assert len(side) == 1


def test_a_book_row_stored_under_a_known_canonical_symbol_is_not_normalised_again() -> None:
    seen: list[str] = []

    class Known(dict[str, object]):
        def __contains__(self, key: object) -> bool:
            seen.append(str(key))
            return super().__contains__(key)

    side = book_side(Market.US, [(1, "AAPL", True, D(1), D(1)), (2, "brk-b", True, D(1), D(1))], known=Known(AAPL=0))
    assert seen == ["AAPL", "brk-b"] and list(side.first) == ["AAPL", "BRK.B"]


def test_the_broker_side_folds_in_a_snapshot_as_it_is_iterated() -> None:
    def snapshot() -> Iterator[BrokerPosition]:
        yield BrokerPosition("700", D(100), D(380))
        yield BrokerPosition("0700.HK", D(200), D(383))
        yield BrokerPosition("00005", D(0), D(60))  # quantity 0: absent
        yield BrokerPosition("HK.00000", D(0), D(1))  # absent, so not even unrecognised
        yield BrokerPosition("AAPL", D(5), D(190))

    side = broker_side(Market.HK, snapshot())
    assert side.first == {"00700": ("700", D(100), D(380))}
    assert side.more == {"00700": [("0700.HK", D(200), D(383))]}
    assert side.unrecognised == ["AAPL"]


def test_rows_of_a_side_are_not_tracked_by_the_garbage_collector() -> None:
    """A side of 100,000 rows must not make every collection of the process scan it."""
    book = book_side(Market.US, [(1, "AAPL", True, D(1), D(2))])
    broker = broker_side(Market.US, [BrokerPosition("AAPL", D(1), D(2))])
    gc.collect()
    assert not gc.is_tracked(book.first["AAPL"]) and not gc.is_tracked(broker.first["AAPL"])


def test_diff_sides_reports_the_same_plan_as_diff() -> None:
    book = [
        Position(1, "AAPL", LONG, D(5), D(10), None, None, NOW),
        Position(2, "KO", SHORT, D(3), D(60), None, None, NOW),
    ]
    broker = [BrokerPosition("AAPL", D(6), D(10)), BrokerPosition("MSFT", D(2), D(400))]
    rows = [(p.position_id, p.symbol, p.side is LONG, p.quantity, p.avg_entry_price) for p in book]
    fast = diff_sides(book_side(Market.US, rows), broker_side(Market.US, broker), market=Market.US)
    assert fast == diff(book, broker, market=Market.US)
    assert [(c.kind, c.symbol) for c in fast.changes] == [
        (ChangeKind.QUANTITY, "AAPL"),
        (ChangeKind.PHANTOM, "KO"),
        (ChangeKind.MISSING, "MSFT"),
    ]
