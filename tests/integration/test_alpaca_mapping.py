"""The one mapping module between Alpaca's wire values and the domain (pure functions, no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.models import Clock, Order

from catalyst_mcp.brokers import alpaca_mapping as wire
from catalyst_mcp.brokers import alpaca_orders as orders
from catalyst_mcp.domain.enums import LegKind, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Fill, OrderIntent
from catalyst_mcp.markets.profiles import US_PROFILE

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
    on_wire = wire.wire_price(Decimal(price), side)
    assert on_wire == US_PROFILE.round_to_tick(on_wire)


def test_a_price_that_rounds_to_nothing_is_refused() -> None:
    for price in ["0", "-1", "0.00001"]:
        with pytest.raises(InvalidInput):
            wire.wire_price(Decimal(price), Side.BUY)


def test_an_intent_becomes_a_simple_oto_or_bracket_order_with_legs_rounded_tighter() -> None:
    plain = orders.wire_order(OrderIntent("AAPL", Side.BUY, Decimal(3), OrderType.MARKET), "cat-a")
    oto = orders.wire_order(
        OrderIntent("AAPL", Side.BUY, Decimal(3), OrderType.MARKET, stop_loss=Decimal("180.001")), "cat-b"
    )
    bracket = orders.wire_order(
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
    assert oto.order_class.value == "oto" and oto.legs == {orders.LegSpec("stop", Decimal("180.01"))}
    assert bracket.order_class.value == "bracket"
    assert bracket.legs == {orders.LegSpec("stop", Decimal("200.00")), orders.LegSpec("limit", Decimal("170.00"))}
    fields = bracket.request.to_request_fields()
    assert (fields["limit_price"], fields["client_order_id"], fields["time_in_force"]) == (190.01, "cat-c", "day")


def test_fractional_or_non_positive_quantities_are_not_sent() -> None:
    for qty in ["0.5", "0", "-2"]:
        with pytest.raises(InvalidInput):
            orders.wire_order(OrderIntent("AAPL", Side.BUY, Decimal(qty), OrderType.MARKET), "cat-q")


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


def sdk_order(status: str, filled_qty: str, avg: str | None, *, legs: list[Order] | None = None, **extra: Any) -> Order:
    times = dict.fromkeys(("created_at", "updated_at", "submitted_at"), "2026-11-25T15:00:00Z")
    fields: dict[str, Any] = {"id": ORDER_ID, "client_order_id": "cat-x", "symbol": "AAPL", "qty": "10", "side": "buy"}
    fields |= {"type": "market", "order_class": "simple", "time_in_force": "day", "extended_hours": False}
    return Order(**times, **(fields | extra), status=status, filled_qty=filled_qty, filled_avg_price=avg, legs=legs)


def fills(*quantities: int, order_id: str = ORDER_ID) -> list[Fill]:
    return [
        Fill(f"f{i}-{order_id}", order_id, "AAPL", Side.BUY, Decimal(q), Decimal(100 + i), AT)
        for i, q in enumerate(quantities)
    ]


@pytest.mark.parametrize(
    ("status", "reported", "avg", "known", "domain"),
    [
        ("partially_filled", "4", "190.5", (4,), OrderStatus.PARTIALLY_FILLED),
        ("filled", "10", "190.5", (4,), OrderStatus.FILLED),  # the activities lag: the order's figures stand
        ("filled", "10", "190.5", (), OrderStatus.FILLED),
        ("partially_filled", "4", "190.5", (4, 6), OrderStatus.PARTIALLY_FILLED),  # fills ahead of the order
        ("new", "0", None, (), OrderStatus.ACCEPTED),
        ("canceled", "3", "190.5", (3,), OrderStatus.CANCELLED),
    ],
)
def test_an_orders_fill_is_alpacas_cumulative_figures_whatever_the_activities_say(
    status: str, reported: str, avg: str | None, known: tuple[int, ...], domain: OrderStatus
) -> None:
    other = fills(5, order_id="00000000-0000-4000-8000-000000000000")

    order = wire.broker_order(sdk_order(status, reported, avg), fills(*known) + other)

    assert (order.status, order.filled_quantity) == (domain, Decimal(reported))
    assert order.avg_fill_price == (None if avg is None else Decimal(avg))
    assert [f.fill_id for f in order.fills] == [f.fill_id for f in fills(*known)]  # its own fills only


def test_an_average_price_alpaca_does_not_know_yet_is_none() -> None:
    assert wire.broker_order(sdk_order("partially_filled", "4", "0")).avg_fill_price is None
    assert wire.broker_order(sdk_order("new", "0", "0")).avg_fill_price is None


def test_only_a_partial_fill_needs_its_individual_fills() -> None:
    cases = {("new", "0"): False, ("partially_filled", "4"): True, ("filled", "10"): False, ("canceled", "3"): True}
    for (status, filled), expected in cases.items():
        assert wire.partially_filled(sdk_order(status, filled, "190.5" if filled != "0" else None)) is expected


LEG_IDS = ("11111111-0000-4000-8000-000000000001", "11111111-0000-4000-8000-000000000002")


def test_nested_legs_become_the_orders_legs_with_it_as_their_parent() -> None:
    exits: dict[str, Any] = {"side": "sell", "order_class": "bracket", "time_in_force": "gtc"}
    target = sdk_order("new", "0", None, id=LEG_IDS[0], type="limit", limit_price="210.5", **exits)
    stop = sdk_order("held", "0", None, id=LEG_IDS[1], type="stop", stop_price="180.25", **exits)
    entry = sdk_order("filled", "10", "190.5", order_class="bracket", legs=[target, stop])

    order = wire.broker_order(entry)

    assert (order.parent_id, order.leg_kind, order.stop_price) == (None, None, None)
    assert [(leg.broker_order_id, leg.parent_id, leg.leg_kind) for leg in order.legs] == [
        (LEG_IDS[0], ORDER_ID, LegKind.TAKE_PROFIT),
        (LEG_IDS[1], ORDER_ID, LegKind.STOP_LOSS),
    ]
    assert order.legs[1].stop_price == Decimal("180.25") and order.legs[1].order_type is OrderType.MARKET
    assert all(leg.status is OrderStatus.ACCEPTED and leg.side is Side.SELL for leg in order.legs)
    assert [o.id for o in wire.with_legs(entry)] == [entry.id, target.id, stop.id]


@pytest.mark.parametrize(
    ("side", "stop", "target", "sent_stop", "sent_target"),
    [
        (Side.SELL, "180.001", "210.004", "180.01", "210.01"),  # a long's exit: both round up
        (Side.BUY, "210.009", "180.009", "210.00", "180.00"),  # a short's exit: both round down
    ],
)
def test_protection_with_both_prices_is_one_good_till_cancelled_oco_order(
    side: Side, stop: str, target: str, sent_stop: str, sent_target: str
) -> None:
    sent = orders.protect_order("AAPL", side, Decimal(7), Decimal(stop), Decimal(target), "cat-oco")

    fields = sent.request.to_request_fields()
    assert (fields["order_class"], fields["type"], fields["time_in_force"]) == ("oco", "limit", "gtc")
    assert (fields["side"], fields["qty"], fields["client_order_id"]) == (side.value, 7.0, "cat-oco")
    assert fields["take_profit"] == {"limit_price": float(sent_target)}
    assert fields["stop_loss"] == {"stop_price": float(sent_stop)} and "limit_price" not in fields
    assert sent.head == orders.LegSpec("limit", Decimal(sent_target))
    assert sent.legs == {orders.LegSpec("stop", Decimal(sent_stop))}


def test_protection_with_one_price_is_a_lone_stop_or_limit_order() -> None:
    stop = orders.protect_order("AAPL", Side.SELL, Decimal(3), Decimal("180.001"), None, "cat-stop")
    limit = orders.protect_order("AAPL", Side.BUY, Decimal(3), None, Decimal("150.009"), "cat-limit")

    stop_fields, limit_fields = stop.request.to_request_fields(), limit.request.to_request_fields()
    assert (stop_fields["type"], stop_fields["stop_price"], stop_fields["time_in_force"]) == ("stop", 180.01, "gtc")
    assert (limit_fields["type"], limit_fields["limit_price"], limit_fields["side"]) == ("limit", 150.0, "buy")
    assert "order_class" not in stop_fields and stop.legs == frozenset() and stop.head is None


@pytest.mark.parametrize(
    ("quantity", "stop", "target"),
    [("0.5", "180", "210"), ("0", "180", "210"), ("3", None, None), ("3", "210", "180"), ("3", "180.004", "180.001")],
)
def test_protection_that_cannot_be_sent_is_invalid_input(quantity: str, stop: str | None, target: str | None) -> None:
    with pytest.raises(InvalidInput):
        orders.protect_order(
            "AAPL",
            Side.SELL,
            Decimal(quantity),
            None if stop is None else Decimal(stop),
            None if target is None else Decimal(target),
            "cat-bad",
        )


def test_an_oco_answer_is_confirmed_only_with_its_limit_and_its_stop_leg() -> None:
    sent = orders.protect_order("AAPL", Side.SELL, Decimal(10), Decimal("180"), Decimal("210"), "cat-oco")
    exits: dict[str, Any] = {"side": "sell", "order_class": "oco", "time_in_force": "gtc", "type": "limit"}
    exits["limit_price"] = "210"
    stop = sdk_order("new", "0", None, id=LEG_IDS[1], side="sell", order_class="oco", type="stop", stop_price="180")

    assert orders.confirmed(sdk_order("new", "0", None, legs=[stop], **exits), sent)
    assert not orders.confirmed(sdk_order("new", "0", None, **exits), sent)  # the stop leg was dropped
    assert not orders.confirmed(sdk_order("new", "0", None, legs=[stop], **(exits | {"order_class": "simple"})), sent)
    assert not orders.confirmed(sdk_order("new", "0", None, legs=[stop], **(exits | {"limit_price": "209"})), sent)


def alpaca_clock(is_open: bool, next_open: str, next_close: str) -> Clock:
    return Clock(timestamp=AT, is_open=is_open, next_open=next_open, next_close=next_close)


def test_a_clock_answer_holds_from_its_reading_until_the_next_open_or_close() -> None:
    opened = wire.market_clock(alpaca_clock(True, "2026-11-27T09:30:00-05:00", "2026-11-25T16:00:00-05:00"), AT)
    closed = wire.market_clock(alpaca_clock(False, "2026-11-27T09:30:00-05:00", "2026-11-27T13:00:00-05:00"), AT)

    close = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    assert opened.changes_at == close and opened.holds_at(close - timedelta(microseconds=1))
    assert not opened.holds_at(close) and not opened.holds_at(AT - timedelta(seconds=1))
    assert closed.changes_at == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert closed.holds_at(datetime(2026, 11, 27, 14, 29, tzinfo=UTC))


def test_a_clock_answer_whose_transition_had_passed_holds_only_for_a_short_grace() -> None:
    late = wire.market_clock(alpaca_clock(True, "2026-11-27T09:30:00-05:00", "2026-11-25T09:59:59-05:00"), AT)

    assert late.holds_at(AT + wire.CLOCK_GRACE - timedelta(microseconds=1))
    assert not late.holds_at(AT + wire.CLOCK_GRACE)
