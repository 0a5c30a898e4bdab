"""What each adapter operation costs in requests to Alpaca, counted by the emulator: an order's own answer
carries its fill, fill activities are read only for a partial fill, and the clock once per open or close."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import TypeVar

import pytest

from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from tests.fakes.alpaca_harness import Adapter, alpaca_adapter

pytestmark = pytest.mark.anyio

T = TypeVar("T")
CENT = Decimal("0.01")


@pytest.fixture
async def alpaca(clock: FixedClock) -> AsyncIterator[Adapter]:
    async with alpaca_adapter(clock) as adapter:
        yield adapter


async def cost(alpaca: Adapter, call: Awaitable[T]) -> tuple[T, dict[str, int]]:
    """The result of `call` and the requests it made, by method and route."""
    alpaca.emulator.reset_counts()
    result = await call
    return result, {f"{m} {r}": n for (m, r), n in sorted(alpaca.emulator.counts.items())}


ORDERS = "POST /v2/orders"
FILLS = "GET /v2/account/activities/{kind}"


async def test_every_operation_costs_the_fewest_requests_alpaca_allows(alpaca: Adapter) -> None:
    bid = alpaca.emulator.quote("AAPL").bid
    below = (bid * Decimal("0.9")).quantize(CENT)

    assert (await cost(alpaca, alpaca.broker.get_account()))[1] == {"GET /v2/account": 1}
    assert (await cost(alpaca, alpaca.broker.get_positions()))[1] == {"GET /v2/positions": 1}
    assert (await cost(alpaca, alpaca.data.get_quote("AAPL")))[1] == {"GET /v2/stocks/snapshots": 1}

    filled, spent = await cost(alpaca, alpaca.broker.submit_order(intent("10"), "cat-filled"))
    assert filled.status is OrderStatus.FILLED and spent == {ORDERS: 1}
    stop, target = below, (bid * Decimal("1.1")).quantize(CENT)
    bracket, spent = await cost(alpaca, alpaca.broker.submit_order(intent("2", stop, target), "cat-bracket"))
    assert bracket.status is OrderStatus.FILLED and len(bracket.legs) == 2 and spent == {ORDERS: 1}
    resting, spent = await cost(alpaca, alpaca.broker.submit_order(intent("1", limit=below), "cat-resting"))
    assert resting.status is OrderStatus.ACCEPTED and spent == {ORDERS: 1}
    alpaca.emulator.partial_share = Decimal("0.5")
    partial, spent = await cost(alpaca, alpaca.broker.submit_order(intent("4"), "cat-partial"))
    assert partial.status is OrderStatus.PARTIALLY_FILLED and spent == {ORDERS: 1, FILLS: 1}

    lookup = "GET /v2/orders:by_client_order_id"
    assert (await cost(alpaca, alpaca.broker.get_order_by_client_id("cat-filled")))[1] == {lookup: 1}
    assert (await cost(alpaca, alpaca.broker.get_order_by_client_id("cat-partial")))[1] == {lookup: 1, FILLS: 1}
    assert (await cost(alpaca, alpaca.broker.get_order_by_client_id("cat-unknown")))[1] == {lookup: 1}

    working, spent = await cost(alpaca, alpaca.broker.get_open_orders())
    assert len(working) == 4 and spent == {"GET /v2/orders": 1, FILLS: 1}  # the partial entry's fills
    working, spent = await cost(alpaca, alpaca.broker.get_open_orders("MSFT"))
    assert working == [] and spent == {"GET /v2/orders": 1}

    cancelled, spent = await cost(alpaca, alpaca.broker.cancel_order(resting.broker_order_id))
    assert cancelled.status is OrderStatus.CANCELLED
    assert spent == {"DELETE /v2/orders/{order_id}": 1, "GET /v2/orders/{order_id}": 1}

    for leg in bracket.legs[:1]:
        await alpaca.broker.cancel_order(leg.broker_order_id)  # frees the bracket's two shares
    placed, spent = await cost(alpaca, alpaca.broker.protect("AAPL", Side.SELL, Decimal(12), stop, target, "cat-p"))
    assert len(placed) == 2 and spent == {ORDERS: 1}

    assert (await cost(alpaca, alpaca.broker.is_market_open()))[1] == {"GET /v2/clock": 1}
    for _ in range(20):
        assert (await cost(alpaca, alpaca.broker.is_market_open())) == (True, {})


def intent(
    qty: str, stop: Decimal | None = None, target: Decimal | None = None, *, limit: Decimal | None = None
) -> OrderIntent:
    kind = OrderType.MARKET if limit is None else OrderType.LIMIT
    return OrderIntent("AAPL", Side.BUY, Decimal(qty), kind, limit, stop, target)
