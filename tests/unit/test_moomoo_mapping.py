"""The Moomoo mapping module on its own (no SDK, no OpenD): codes, numbers, statuses, orders, bars, the checks
made before an order leaves, and the SDK's error strings to the domain's errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalyst_mcp.brokers import moomoo_mapping as wire
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.signals.bars import BarSize

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["700", "0700", "00700", "HK.00700", "0700.HK", " 700 "])
def test_hk_codes_become_futu_codes_and_back(raw: str) -> None:
    assert wire.futu_code(raw) == "HK.00700"
    assert wire.symbol_of(wire.futu_code(raw)) == "00700"


def test_codes_of_other_markets_are_not_hk_symbols() -> None:
    assert wire.symbol_of("US.AAPL") is None
    with pytest.raises(InvalidInput):
        wire.futu_code("AAPL")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(380.2, Decimal("380.2")), ("N/A", None), (float("nan"), None), ("", None), (100, Decimal(100))],
)
def test_the_sdks_numbers_become_exact_decimals(raw: object, expected: Decimal | None) -> None:
    assert wire.dec(raw) == expected


def test_prices_and_quantities_are_plain() -> None:
    assert str(wire.price(370.0)) == "370" and str(wire.price(18.0299999999)) == "18.03"
    assert str(wire.quantity(2000.0)) == "2000"


def test_an_order_row_becomes_a_broker_order_with_its_cumulative_fill() -> None:
    row = {
        "order_id": "FT1",
        "code": "HK.01810",
        "trd_side": "SELL",
        "order_type": "NORMAL",
        "order_status": "FILLED_PART",
        "qty": 600.0,
        "price": 18.03,
        "dealt_qty": 200.0,
        "dealt_avg_price": 18.03,
        "remark": "cat-abc",
        "create_time": "2026-11-25 10:00:01.250",
    }
    order = wire.broker_order(row, NOW)
    assert (order.symbol, order.side, order.order_type, order.status) == (
        "01810",
        Side.SELL,
        OrderType.LIMIT,
        OrderStatus.PARTIALLY_FILLED,
    )
    assert (order.quantity, order.filled_quantity, order.avg_fill_price) == (
        Decimal(600),
        Decimal(200),
        Decimal("18.03"),
    )
    assert order.client_order_id == "cat-abc" and order.submitted_at.utcoffset() is not None
    assert wire.broker_order({**row, "remark": ""}, NOW).client_order_id == "futu-FT1"


def test_of_two_reports_of_an_order_the_later_one_wins() -> None:
    early = {"order_id": "1", "dealt_qty": 200.0, "order_status": "FILLED_PART", "updated_time": "10:00:01"}
    late = {"order_id": "1", "dealt_qty": 600.0, "order_status": "FILLED_ALL", "updated_time": "10:00:02"}
    assert wire.newer(early, late) is late and wire.newer(late, early) is late


def test_a_minute_k_line_is_stamped_at_its_start() -> None:
    row = {"time_key": "2026-11-25 09:31:00", "open": 380.0, "high": 380.4, "low": 379.8, "close": 380.2,
           "volume": 1000}  # fmt: skip
    bar = wire.bar(row, BarSize.MINUTE_1)
    assert bar is not None and bar.at.strftime("%H:%M") == "09:30" and bar.close == Decimal("380.2")


def test_orders_must_be_whole_lots_and_limits_on_the_spread() -> None:
    wire.check_lot("00700", Decimal(300), Decimal(100))
    with pytest.raises(BrokerRejected, match="board lots of 100"):
        wire.check_lot("00700", Decimal(150), Decimal(100))
    wire.check_spread("01810", Decimal("18.03"), Decimal("0.01"))
    with pytest.raises(BrokerRejected, match=r"18\.02 and 18\.04"):
        wire.check_spread("01810", Decimal("18.03"), Decimal("0.02"))


def test_a_client_order_id_longer_than_a_remark_is_refused() -> None:
    assert wire.remark("cat-" + "a" * 32) == "cat-" + "a" * 32
    with pytest.raises(InvalidInput):
        wire.remark("x" * 65)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Disconnect", TemporaryFailure),
        ("PacketErr.Timeout", TemporaryFailure),
        ("Connect timeout", TemporaryFailure),
        ("requests are too frequent", TemporaryFailure),
        ("trading is locked: unlock it first", OperatorNeeded),
        ("insufficient buying power", BrokerRejected),
    ],
)
def test_every_sdk_failure_maps_once_to_the_domain(message: str, kind: type[Exception]) -> None:
    error = wire.translate("the order", message, ("s3cret",))
    assert type(error) is kind and "\n" not in str(error)


def test_a_secret_never_survives_in_an_error() -> None:
    assert "s3cret" not in str(wire.translate("unlock", "bad password s3cret\nline two", ("s3cret",)))
