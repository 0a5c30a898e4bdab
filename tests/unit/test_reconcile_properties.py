"""Properties of the pure diff: carrying out its row operations makes the book equal the broker (symbols in
flight aside), never breaks one-open-row-per-symbol, and a second diff finds nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.models import BrokerPosition, Position
from catalyst_mcp.markets.symbols import canonical_symbol
from catalyst_mcp.reconcile.diff import diff, looks_like_outage
from catalyst_mcp.reconcile.plan import ChangeKind, InFlight, SyncPlan

D = Decimal
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)

# Each code in several spellings, so books and snapshots disagree on how symbols are written.
HK_SPELLINGS = {
    "00700": ["00700", "700", "0700", "HK.00700", "0700.HK"],
    "00005": ["00005", "5", "0005.HK"],
    "00670": ["00670", "670", "0670"],
    "09988": ["09988", "9988", "HK.09988"],
}
US_SPELLINGS = {"AAPL": ["AAPL", "aapl"], "BRK.B": ["BRK.B", "BRK-B", "BRK/B"], "MSFT": ["MSFT"], "TSLA": ["TSLA"]}

quantities = st.decimals(min_value=D("-900"), max_value=D("900"), places=2).filter(lambda q: q != 0)
prices = st.sampled_from([D("0"), D("9.5"), D("10"), D("10.0004"), D("380.2")])


@dataclass
class Row:
    symbol: str
    side: PositionSide
    quantity: Decimal
    avg: Decimal

    @property
    def signed(self) -> Decimal:
        return self.quantity if self.side is PositionSide.LONG else -self.quantity


def carry_out(rows: dict[int, Row], plan: SyncPlan) -> dict[int, Row]:
    """Apply the plan's operations the way the set-based SQL does, checking every guard and the unique index."""
    after = dict(rows)

    def assert_one_open_row_per_stored_symbol() -> None:
        stored = [r.symbol for r in after.values()]
        assert len(stored) == len(set(stored)), stored

    for c in plan.closes:
        row = after.pop(c.position_id)
        assert (row.symbol, row.side, row.quantity) == (c.symbol, c.side, c.quantity)
    assert_one_open_row_per_stored_symbol()
    for u in plan.updates:
        row = after[u.position_id]
        assert (row.side, row.quantity) == (u.side, u.from_quantity)
        after[u.position_id] = Row(u.symbol, row.side, u.quantity, u.avg_entry_price)
        assert_one_open_row_per_stored_symbol()
    for i, ins in enumerate(plan.inserts):
        after[10_000 + i] = Row(ins.symbol, ins.side, ins.quantity, ins.avg_entry_price)
        assert_one_open_row_per_stored_symbol()
    return after


@st.composite
def cases(draw: st.DrawFn, spellings: dict[str, list[str]]) -> tuple[dict[int, Row], list[BrokerPosition], set[str]]:
    codes = sorted(spellings)
    rows: dict[int, Row] = {}
    for code in draw(st.lists(st.sampled_from(codes), unique=True)):
        # One row, or (rarely) two rows under different spellings: the unique index allows that.
        names = draw(st.lists(st.sampled_from(spellings[code]), min_size=1, max_size=2, unique=True))
        for name in names:
            q = draw(quantities)
            side = PositionSide.LONG if q > 0 else PositionSide.SHORT
            rows[len(rows) + 1] = Row(name, side, abs(q), draw(prices.filter(lambda p: p > 0)))
    broker = [
        BrokerPosition(draw(st.sampled_from(spellings[code])), draw(quantities | st.just(D(0))), draw(prices))
        for code in draw(st.lists(st.sampled_from(codes), max_size=6))  # repeats: one code reported twice
    ]
    flying = set(draw(st.lists(st.sampled_from(codes), max_size=2)))
    return rows, broker, flying


def positions(rows: dict[int, Row]) -> list[Position]:
    return [Position(pid, r.symbol, r.side, r.quantity, r.avg, None, None, NOW) for pid, r in rows.items()]


def net_by_symbol(market: Market, rows: dict[int, Row]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in rows.values():
        code = canonical_symbol(market, r.symbol)
        assert code is not None
        out[code] = out.get(code, D(0)) + r.signed
    return {s: q for s, q in out.items() if q != 0}


def broker_by_symbol(market: Market, broker: list[BrokerPosition]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for b in broker:
        code = canonical_symbol(market, b.symbol)
        assert code is not None
        out[code] = out.get(code, D(0)) + b.quantity
    return {s: q for s, q in out.items() if q != 0}


def check(market: Market, case: tuple[dict[int, Row], list[BrokerPosition], set[str]]) -> None:
    rows, broker, flying = case
    in_flight = [InFlight(s, f"cat-{s}") for s in flying]
    plan = diff(positions(rows), broker, in_flight, D("0.0001"), market=market)
    after = carry_out(rows, plan)

    expected = broker_by_symbol(market, broker)
    before = net_by_symbol(market, rows)
    result = net_by_symbol(market, after)
    for code in set(expected) | set(before) | set(result):
        want = before.get(code) if code in flying else expected.get(code)
        assert result.get(code) == want, code
    # Every symbol outside flight is held in one canonically spelled row afterwards.
    for row in after.values():
        canonical = canonical_symbol(market, row.symbol)
        if canonical not in flying:
            assert row.symbol == canonical
    # Nothing of a symbol in flight is touched.
    touched = {canonical_symbol(market, rows[c.position_id].symbol) for c in plan.closes}
    touched |= {canonical_symbol(market, rows[u.position_id].symbol) for u in plan.updates}
    touched |= {i.symbol for i in plan.inserts}
    assert not touched & flying
    # One change per symbol at most, of the kind presence dictates.
    assert len({c.symbol for c in plan.changes}) == len(plan.changes)
    for c in plan.changes:
        if c.kind is ChangeKind.PHANTOM:
            assert c.broker_quantity == 0 and c.symbol not in expected
        if c.kind is ChangeKind.MISSING:
            assert c.symbol not in before

    again = diff(positions(after), broker, in_flight, D("0.0001"), market=market)
    assert again.is_empty and not again.has_operations
    assert looks_like_outage(again, D("0.5"), 3) is False


@settings(max_examples=300, deadline=None)
@given(case=cases(HK_SPELLINGS))
def test_hk_books_in_any_spelling_end_equal_to_the_broker_and_a_second_diff_is_empty(
    case: tuple[dict[int, Row], list[BrokerPosition], set[str]],
) -> None:
    check(Market.HK, case)


@settings(max_examples=300, deadline=None)
@given(case=cases(US_SPELLINGS))
def test_us_books_end_equal_to_the_broker_and_a_second_diff_is_empty(
    case: tuple[dict[int, Row], list[BrokerPosition], set[str]],
) -> None:
    check(Market.US, case)


@settings(max_examples=200, deadline=None)
@given(book=st.integers(0, 40), gone=st.integers(0, 40), share=st.sampled_from([D("0.25"), D("0.5"), D("0.9")]))
def test_the_outage_guard_fires_exactly_when_the_whole_book_or_more_than_the_share_and_the_minimum_would_close(
    book: int, gone: int, share: Decimal
) -> None:
    gone = min(gone, book)
    symbols = [f"S{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(book)]
    held = [Position(i + 1, s, PositionSide.LONG, D(1), D(1), None, None, NOW) for i, s in enumerate(symbols)]
    plan = diff(held, [BrokerPosition(s, D(1), D(1)) for s in symbols[gone:]], market=Market.US)
    everything = book > 0 and gone == book
    assert looks_like_outage(plan, share, 3) is (everything or (gone >= 3 and D(gone) > share * book))
