"""The one mapping module between Alpaca's wire values and the domain (pure functions, no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.models import Order

from catalyst_mcp.brokers import alpaca_mapping as wire
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Fill, OrderIntent

ORDER_ID = "61e69015-8549-4bfd-b9c3-01e75843f47d"
AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def api_error(status: int, code: int | None = None, message: str = "nope") -> APIError:
    response = requests.Response()
    response.status_code = status
    body = json.dumps({"code": code, "message": message}) if code is not None else message
    return APIError(body, requests.HTTPError(response=response))  # type: ignore[no-untyped-call]


def test_numbers_from_alpaca_become_exact_decimals() -> None:
    assert wire.dec("190.12") == Decimal("190.12") and wire.dec(190.12) == Decimal("190.12")
    assert wire.dec(0.1) == Decimal("0.1") and wire.dec_or_none(None) is None and wire.dec_or_none("") is None
    assert str(wire.quantity("10.0")) == "10" and str(wire.quantity(2.50)) == "2.5"
    for bad in ["NaN", "inf", "abc", True, None]:
        with pytest.raises(ValueError):
            wire.dec(bad)


@pytest.mark.parametrize(
    ("price", "side", "sent"),
    [
        ("190.123", Side.BUY, "190.12"),
        ("190.123", Side.SELL, "190.13"),
        ("190.12", Side.BUY, "190.12"),
        ("1.00001", Side.BUY, "1.00"),
        ("0.99999", Side.BUY, "0.9999"),
        ("0.12345", Side.SELL, "0.1235"),
    ],
)
def test_prices_go_out_on_the_tick_never_worse_for_the_side(price: str, side: Side, sent: str) -> None:
    assert str(wire.wire_price(Decimal(price), side)) == sent
    assert wire.on_tick(wire.wire_price(Decimal(price), side))


def test_a_price_that_rounds_to_nothing_is_refused() -> None:
    for price in ["0", "-1", "0.00001"]:
        with pytest.raises(InvalidInput):
            wire.wire_price(Decimal(price), Side.BUY)


def test_an_intent_becomes_a_simple_oto_or_bracket_order_with_legs_rounded_tighter() -> None:
    plain = wire.wire_order(OrderIntent("AAPL", Side.BUY, Decimal(3), OrderType.MARKET), "cat-a")
    oto = wire.wire_order(
        OrderIntent("AAPL", Side.BUY, Decimal(3), OrderType.MARKET, stop_loss=Decimal("180.001")), "cat-b"
    )
    bracket = wire.wire_order(
        OrderIntent(
            "AAPL",
            Side.SELL,
            Decimal(3),
            OrderType.LIMIT,
            limit_price=Decimal("190.005"),
            stop_loss=Decimal("200.009"),
            take_profit=Decimal("170.009"),
        ),
        "cat-c",
    )

    assert (plain.order_class.value, plain.legs) == ("simple", frozenset())
    assert oto.order_class.value == "oto" and oto.legs == {wire.LegSpec("stop", Decimal("180.01"))}
    assert bracket.order_class.value == "bracket"
    assert bracket.legs == {wire.LegSpec("stop", Decimal("200.00")), wire.LegSpec("limit", Decimal("170.00"))}
    fields = bracket.request.to_request_fields()
    assert (fields["limit_price"], fields["client_order_id"], fields["time_in_force"]) == (190.01, "cat-c", "day")


def test_fractional_or_non_positive_quantities_are_not_sent() -> None:
    for qty in ["0.5", "0", "-2"]:
        with pytest.raises(InvalidInput):
            wire.wire_order(OrderIntent("AAPL", Side.BUY, Decimal(qty), OrderType.MARKET), "cat-q")


@pytest.mark.parametrize(
    ("status", "filled", "domain"),
    [
        ("new", "0", OrderStatus.ACCEPTED),
        ("accepted", "0", OrderStatus.ACCEPTED),
        ("pending_new", "0", OrderStatus.ACCEPTED),
        ("held", "0", OrderStatus.ACCEPTED),
        ("pending_cancel", "3", OrderStatus.PARTIALLY_FILLED),
        ("partially_filled", "3", OrderStatus.PARTIALLY_FILLED),
        ("filled", "5", OrderStatus.FILLED),
        ("canceled", "0", OrderStatus.CANCELLED),
        ("canceled", "2", OrderStatus.CANCELLED),
        ("expired", "0", OrderStatus.CANCELLED),
        ("replaced", "0", OrderStatus.CANCELLED),
        ("rejected", "0", OrderStatus.REJECTED),
        ("some_future_status", "0", OrderStatus.ACCEPTED),
    ],
)
def test_alpaca_statuses_map_to_the_domains(status: str, filled: str, domain: OrderStatus) -> None:
    assert wire.order_status(status, Decimal(filled)) is domain
    assert wire.is_final(status) is (domain in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED))


def test_sides_map_including_short_sales() -> None:
    assert [wire.side_of(s) for s in ("buy", "sell", "sell_short")] == [Side.BUY, Side.SELL, Side.SELL]


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (api_error(401, 40110000, "request is not authorized"), OperatorNeeded, "APCA_API_KEY_ID"),
        (api_error(403, 40310000, "insufficient buying power"), BrokerRejected, "insufficient buying power"),
        (api_error(403, 40310100, "trading is disabled"), OperatorNeeded, "trading is disabled"),
        (api_error(422, 40010001, "client_order_id must be unique"), BrokerRejected, "must be unique"),
        (api_error(400, None, "bad request body"), BrokerRejected, "bad request body"),
        (api_error(429, 42910000, "rate limit exceeded"), TemporaryFailure, "429"),
        (api_error(500, None, "<html>oops</html>"), TemporaryFailure, "500"),
        (api_error(504, None, "gateway timeout"), TemporaryFailure, "504"),
        (requests.ReadTimeout("read timed out"), TemporaryFailure, "did not answer within 2 s"),
        (requests.ConnectionError("reset by peer"), TemporaryFailure, "connection"),
        (ValueError("unexpected payload"), TemporaryFailure, "cannot read"),
    ],
)
def test_failures_are_translated_once_into_the_taxonomy(error: BaseException, kind: type, text: str) -> None:
    translated = wire.translate(error, timeout=2.0)

    assert type(translated) is kind and text in str(translated) and "\n" not in str(translated)


def test_translated_messages_are_one_bounded_line_without_the_credentials() -> None:
    noisy = api_error(422, 40010001, "line one\nline two key=PKSECRETKEY " + "x" * 500)

    message = str(wire.translate(noisy, ["PKSECRETKEY"]))

    assert "\n" not in message and "PKSECRETKEY" not in message and "***" in message and len(message) < 300


def sdk_order(status: str, filled_qty: str, avg: str | None) -> Order:
    times = dict.fromkeys(("created_at", "updated_at", "submitted_at"), "2026-11-25T15:00:00Z")
    fields: dict[str, Any] = {"id": ORDER_ID, "client_order_id": "cat-x", "symbol": "AAPL", "qty": "10", "side": "buy"}
    fields |= {"type": "market", "order_class": "simple", "time_in_force": "day", "extended_hours": False}
    return Order(**times, **fields, status=status, filled_qty=filled_qty, filled_avg_price=avg)


def fills(*quantities: int, order_id: str = ORDER_ID) -> list[Fill]:
    return [
        Fill(f"f{i}-{order_id}", order_id, "AAPL", Side.BUY, Decimal(q), Decimal(100 + i), AT)
        for i, q in enumerate(quantities)
    ]


@pytest.mark.parametrize(
    ("status", "reported", "known", "domain", "filled", "avg"),
    [
        ("partially_filled", "4", (4,), OrderStatus.PARTIALLY_FILLED, "4", "190.5"),  # in step: Alpaca's average
        ("filled", "10", (4,), OrderStatus.PARTIALLY_FILLED, "4", "100"),  # activities lag: still open
        ("filled", "10", (), OrderStatus.ACCEPTED, "0", None),
        ("partially_filled", "4", (4, 6), OrderStatus.FILLED, "10", "100.6"),  # fills ahead of the order
        ("filled", "10", (3, 7), OrderStatus.FILLED, "10", "190.5"),
    ],
)
def test_an_orders_filled_quantity_is_always_the_sum_of_its_known_fills(
    status: str, reported: str, known: tuple[int, ...], domain: OrderStatus, filled: str, avg: str | None
) -> None:
    other = fills(5, order_id="00000000-0000-4000-8000-000000000000")

    order = wire.broker_order(sdk_order(status, reported, "190.5" if reported != "0" else None), fills(*known) + other)

    assert (order.status, order.filled_quantity) == (domain, Decimal(filled))
    assert order.avg_fill_price == (None if avg is None else Decimal(avg))
    assert sum(f.quantity for f in order.fills) == order.filled_quantity
