"""When an order must be confirmed before it is sent (pure): above ``confirm_notional_above`` by the limit price
or, for a market order, the price it was judged at; every order in live mode; never without a threshold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import Market, OrderType, Side
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.domain.records import ApprovalRecord
from catalyst_mcp.risk.limits import RiskLimits
from catalyst_mcp.services.execution import confirmation_question, confirmation_reason

D = Decimal
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def approval(quantity: str, reference: str | None = "100", limit: str | None = None) -> ApprovalRecord:
    intent = OrderIntent(
        "AAPL",
        Side.BUY,
        D(quantity),
        OrderType.MARKET if limit is None else OrderType.LIMIT,
        None if limit is None else D(limit),
    )
    return ApprovalRecord(
        uuid.uuid4(),
        None,
        Market.US,
        intent,
        NOW,
        NOW + timedelta(minutes=1),
        None,
        "v1",
        reference_price=None if reference is None else D(reference),
    )


def limits(above: str | None) -> RiskLimits:
    return RiskLimits(confirm_notional_above=None if above is None else D(above))


def test_at_the_threshold_no_confirmation_one_cent_above_one() -> None:
    assert confirmation_reason(approval("10"), limits("1000"), live=False, currency="USD") is None
    reason = confirmation_reason(approval("10.0001"), limits("1000"), live=False, currency="USD")
    assert reason == "its value, 1000.01 USD, is above 1000 USD"


def test_a_limit_order_is_valued_at_its_limit_price_not_the_reference() -> None:
    assert confirmation_reason(approval("10", "90", limit="101"), limits("1000"), live=False, currency="USD")
    assert confirmation_reason(approval("10", "110", limit="99"), limits("1000"), live=False, currency="USD") is None


def test_no_threshold_means_no_confirmation_in_paper_and_live_always_confirms() -> None:
    assert confirmation_reason(approval("1000000"), limits(None), live=False, currency="USD") is None
    assert confirmation_reason(approval("1"), limits(None), live=True, currency="USD") == (
        "every order is confirmed in live trading"
    )


def test_the_question_says_what_is_sent_where_and_why() -> None:
    record = approval("12", limit="101.5")
    question = confirmation_question(record, "a reason", live=True, currency="HKD")
    assert question == (
        "Send BUY 12 AAPL limit 101.5 HKD on the LIVE account? Confirmation is needed because a reason."
    )


@given(
    quantity=st.decimals(min_value=D("0.0001"), max_value=D(10**6), places=4),
    price=st.decimals(min_value=D("0.01"), max_value=D(10**4), places=2),
    above=st.decimals(min_value=D(0), max_value=D(10**8), places=2),
)
def test_confirmation_is_needed_exactly_when_the_value_exceeds_the_threshold(
    quantity: Decimal, price: Decimal, above: Decimal
) -> None:
    needed = confirmation_reason(approval(str(quantity), str(price)), limits(str(above)), live=False, currency="USD")
    assert (needed is not None) == (quantity * price > above)
