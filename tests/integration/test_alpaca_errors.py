"""Failures at Alpaca become domain errors once, fast and bounded: no hidden retries, no hung threads,
no blocked event loop, and never a credential in a message or a log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import pytest

from catalyst_mcp.brokers.alpaca import open_alpaca
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.markets.profiles import US_PROFILE
from tests.fakes.alpaca_emulator import AlpacaEmulator, serve
from tests.fakes.alpaca_harness import KEY_ID, SECRET, Adapter, alpaca_adapter, alpaca_settings

pytestmark = pytest.mark.anyio

BUY = OrderIntent("AAPL", Side.BUY, Decimal(5), OrderType.MARKET)


@pytest.fixture
async def alpaca(clock: FixedClock) -> AsyncIterator[Adapter]:
    async with alpaca_adapter(clock, alpaca_timeout_seconds=0.5) as adapter:
        yield adapter


def calls_to(alpaca: Adapter, method: str, path: str) -> int:
    return sum(1 for m, p, _, _ in alpaca.emulator.requests if (m, p) == (method, path))


async def test_wrong_keys_stop_start_up_with_one_line_naming_the_variables(clock: FixedClock) -> None:
    emulator = AlpacaEmulator(clock, key_id="PKSOMEONEELSE", secret_key="another-secret")
    async with serve(emulator) as url:
        with pytest.raises(OperatorNeeded) as caught:
            async with open_alpaca(alpaca_settings(url), US_PROFILE, clock):
                pass  # pragma: no cover

    message = str(caught.value)
    assert "401" in message and "APCA_API_KEY_ID" in message and "\n" not in message
    assert SECRET not in message and KEY_ID not in message


async def test_a_429_fails_at_once_without_the_sdks_hidden_retries(alpaca: Adapter) -> None:
    alpaca.emulator.inject("POST", "/v2/orders", status=429, message="too many requests", times=5)
    started = anyio.current_time()

    with pytest.raises(TemporaryFailure, match="429"):
        await alpaca.broker.submit_order(BUY, "cat-rate-limited")

    assert anyio.current_time() - started < 0.5  # the SDK alone would sleep 3 s per retry
    assert calls_to(alpaca, "POST", "/v2/orders") == 1 and alpaca.emulator.top_orders() == []


async def test_a_read_is_retried_after_an_awaited_backoff(clock: FixedClock) -> None:
    async with alpaca_adapter(clock, alpaca_read_retries=1, alpaca_retry_backoff_seconds=0.05) as alpaca:
        alpaca.emulator.inject("GET", "/v2/clock", status=429)

        assert await alpaca.broker.is_market_open() is True

        assert calls_to(alpaca, "GET", "/v2/clock") == 2


async def test_server_errors_and_timeouts_are_temporary(alpaca: Adapter) -> None:
    alpaca.emulator.inject("GET", "/v2/positions", status=503, message="upstream unavailable")
    with pytest.raises(TemporaryFailure, match=r"\(503\): upstream unavailable"):
        await alpaca.broker.get_positions()

    alpaca.emulator.inject("GET", "/v2/positions", "hang_before")
    started = anyio.current_time()
    with pytest.raises(TemporaryFailure, match=r"did not answer within 0\.5 s"):
        await alpaca.broker.get_positions()
    assert anyio.current_time() - started < 2


async def test_a_hung_call_blocks_neither_the_event_loop_nor_other_calls(alpaca: Adapter) -> None:
    hung = alpaca.emulator.inject("GET", "/v2/account", "hang_before")
    outcome: dict[str, object] = {}

    async def read_account() -> None:
        try:
            await alpaca.broker.get_account()
        except TemporaryFailure as exc:
            outcome["account"] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_account)
        assert await alpaca.broker.is_market_open() is True
        outcome["clock_first"] = "account" not in outcome
    hung.released.set()

    assert outcome["clock_first"] is True and isinstance(outcome["account"], TemporaryFailure)


async def test_the_limiter_bounds_how_many_calls_run_at_once(clock: FixedClock) -> None:
    async with alpaca_adapter(clock, alpaca_timeout_seconds=0.4, alpaca_max_threads=1) as alpaca:
        hung = alpaca.emulator.inject("GET", "/v2/account", "hang_before")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _expect_temporary(alpaca.broker.get_account()))
            await hung.arrived.wait()
            started = anyio.current_time()
            assert await alpaca.broker.is_market_open() is True
            waited = anyio.current_time() - started

    assert waited > 0.2  # the one worker slot was held by the hung call until its timeout


async def _expect_temporary(call: object) -> None:
    with pytest.raises(TemporaryFailure):
        await call  # type: ignore[misc]


async def test_rejections_carry_alpacas_message(alpaca: Adapter) -> None:
    alpaca.emulator.inject("POST", "/v2/orders", status=422, message="qty must be <= 500 for this asset")
    with pytest.raises(BrokerRejected, match="qty must be <= 500 for this asset"):
        await alpaca.broker.submit_order(BUY, "cat-refused")

    too_big = OrderIntent("COST", Side.BUY, Decimal(1000), OrderType.MARKET)
    with pytest.raises(BrokerRejected, match="insufficient buying power"):
        await alpaca.broker.submit_order(too_big, "cat-too-big")
    assert alpaca.emulator.top_orders() == []


async def test_a_403_that_is_not_about_an_order_needs_an_operator(alpaca: Adapter) -> None:
    alpaca.emulator.inject("GET", "/v2/account", status=403, message="access to this account is restricted")

    with pytest.raises(OperatorNeeded, match=r"403.*restricted"):
        await alpaca.broker.get_account()


async def test_a_connection_dropped_after_the_order_was_stored_is_temporary_and_the_order_is_found(
    alpaca: Adapter,
) -> None:
    alpaca.emulator.inject("POST", "/v2/orders", "drop_after")

    with pytest.raises(TemporaryFailure, match="connection"):
        await alpaca.broker.submit_order(BUY, "cat-dropped")

    found = await alpaca.broker.get_order_by_client_id("cat-dropped")
    assert found is not None and found.filled_quantity == 5 and len(alpaca.emulator.top_orders()) == 1


async def test_an_order_that_comes_back_without_its_legs_is_cancelled_and_refused(
    alpaca: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    bid = alpaca.emulator.quote("AAPL").bid
    resting = OrderIntent(
        "AAPL",
        Side.BUY,
        Decimal(5),
        OrderType.LIMIT,
        limit_price=(bid * Decimal("0.95")).quantize(Decimal("0.01")),
        stop_loss=(bid * Decimal("0.9")).quantize(Decimal("0.01")),
        take_profit=(bid * Decimal("1.1")).quantize(Decimal("0.01")),
    )
    alpaca.emulator.drop_legs = True

    with pytest.raises(BrokerRejected, match="without its stop-loss/take-profit legs; the entry was cancelled"):
        await alpaca.broker.submit_order(resting, "cat-unprotected")

    [entry] = alpaca.emulator.top_orders()
    assert entry.status == "canceled" and entry.legs == []
    assert any(r.levelno == logging.ERROR and "cat-unprotected" in r.getMessage() for r in caplog.records)


async def test_an_entry_without_its_legs_that_filled_before_the_cancel_is_returned_as_alpaca_holds_it(
    alpaca: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    last = alpaca.emulator.quote("AAPL").last
    stop, target = (last * Decimal("0.9")).quantize(Decimal("0.01")), (last * Decimal("1.1")).quantize(Decimal("0.01"))
    alpaca.emulator.drop_legs = True

    order = await alpaca.broker.submit_order(
        OrderIntent("AAPL", Side.BUY, Decimal(5), OrderType.MARKET, stop_loss=stop, take_profit=target), "cat-bare"
    )

    # Not a refusal: Alpaca holds the shares, so the book must see them (unprotected, logged for the operator).
    assert (order.status, order.filled_quantity, order.legs) == (OrderStatus.FILLED, Decimal(5), ())
    assert any(r.levelno == logging.ERROR and "cat-bare" in r.getMessage() for r in caplog.records)


async def test_credentials_never_appear_in_errors_or_logs(
    alpaca: Adapter, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"key {KEY_ID} with secret {SECRET} is not permitted"
    alpaca.emulator.inject("GET", "/v2/account", status=403, message=echo)

    with pytest.raises(OperatorNeeded) as caught:
        await alpaca.broker.get_account()

    out, err = capfd.readouterr()
    assert "***" in str(caught.value)
    for text in (str(caught.value), caplog.text, out, err):
        assert SECRET not in text and KEY_ID not in text
