"""Alpaca behind the Broker port, through the official alpaca-py SDK.

The SDK is synchronous (requests), sets no timeout and retries 429/504 with blocking sleeps. Here every call
runs in a worker thread under a bounded limiter, its session has an explicit timeout, the SDK's own retries
are off, and idempotent reads retry with an async backoff instead. Orders are never retried: after an
ambiguous submit the caller looks the order up by client_order_id. Paper unless live is asked for twice.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Asset, Calendar, Order, Position, TradeAccount
from alpaca.trading.models import Clock as AlpacaClock
from alpaca.trading.requests import GetCalendarRequest, GetOrdersRequest
from requests.adapters import HTTPAdapter
from requests.exceptions import RequestException

from catalyst_mcp.brokers import alpaca_mapping as wire
from catalyst_mcp.brokers.alpaca_data import AlpacaMarketData
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode, Market
from catalyst_mcp.domain.errors import (
    BrokerRejected,
    CatalystError,
    InvalidInput,
    OperatorNeeded,
    TemporaryFailure,
)
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, Fill, OrderIntent
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData

T = TypeVar("T")
M = TypeVar("M")
log = logging.getLogger(__name__)

PAPER_URL: Final = "https://paper-api.alpaca.markets"
LIVE_URL: Final = "https://api.alpaca.markets"
DATA_URL: Final = "https://data.alpaca.markets"
_ACTIVITY_PAGE: Final = 100
_ACTIVITY_PAGES: Final = 20


@dataclass(frozen=True, slots=True)
class AlpacaTuning:
    """How long and how often to try (settings ``alpaca_timeout_seconds``, ``alpaca_read_retries``,
    ``alpaca_retry_backoff_seconds``, ``alpaca_max_threads``, ``alpaca_cancel_wait_seconds``)."""

    timeout: float = 10.0  # per request, to connect and to read
    read_retries: int = 1  # extra attempts of an idempotent read after a temporary failure
    retry_backoff: float = 0.25  # seconds before a read's retry (awaited; no worker thread sleeps)
    max_threads: int = 8  # concurrent SDK calls; more wait for a slot
    cancel_wait: float = 5.0  # seconds to await a cancelled order's final state

    @classmethod
    def from_settings(cls, settings: Settings) -> AlpacaTuning:
        return cls(
            timeout=settings.alpaca_timeout_seconds,
            read_retries=settings.alpaca_read_retries,
            retry_backoff=settings.alpaca_retry_backoff_seconds,
            max_threads=settings.alpaca_max_threads,
            cancel_wait=settings.alpaca_cancel_wait_seconds,
        )


@dataclass(frozen=True, slots=True)
class AlpacaEndpoints:
    mode: BrokerMode
    trading_url: str
    data_url: str


def _origin(url: str) -> str:
    """The bare origin the SDK expects (it appends /v2 itself)."""
    return url.rstrip("/").removesuffix("/v2")


def endpoints_for(settings: Settings) -> AlpacaEndpoints:
    """Paper unless live is asked for twice; an explicit URL wins but may not contradict the mode."""
    mode = settings.broker_mode
    if mode is BrokerMode.LIVE and not settings.allow_live:
        raise OperatorNeeded("live trading needs both CATALYST_BROKER_MODE=live and CATALYST_ALLOW_LIVE=yes")
    trading = _origin(settings.alpaca_url or (LIVE_URL if mode is BrokerMode.LIVE else PAPER_URL))
    host = urlsplit(trading).hostname
    if mode is BrokerMode.PAPER and host == urlsplit(LIVE_URL).hostname:
        raise OperatorNeeded("paper mode, but CATALYST_ALPACA_URL points at Alpaca's live endpoint")
    if mode is BrokerMode.LIVE and host == urlsplit(PAPER_URL).hostname:
        raise OperatorNeeded("live mode, but CATALYST_ALPACA_URL points at Alpaca's paper endpoint")
    return AlpacaEndpoints(mode, trading, _origin(settings.alpaca_data_url or DATA_URL))


def _credentials(settings: Settings) -> tuple[str, str]:
    key = settings.alpaca_key_id.get_secret_value() if settings.alpaca_key_id else ""
    secret = settings.alpaca_secret_key.get_secret_value() if settings.alpaca_secret_key else ""
    if not key or not secret:
        raise OperatorNeeded("the Alpaca broker needs APCA_API_KEY_ID and APCA_API_SECRET_KEY")
    return key, secret


class _TimeoutSession(requests.Session):
    """A session whose every request has a timeout, and whose transport never retries by itself."""

    def __init__(self, timeout: float, pool_size: int) -> None:
        super().__init__()
        self.timeout = timeout
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def harden(client: RESTClient, tuning: AlpacaTuning) -> None:
    """Give an SDK client a session with a timeout and turn its hidden retries (blocking sleeps) off."""
    if not all(hasattr(client, a) for a in ("_session", "_retry", "_retry_wait", "_retry_codes")):
        raise OperatorNeeded("this alpaca-py version hides its session or retry settings: its calls cannot be bounded")
    client._session.close()
    client._session = _TimeoutSession(tuning.timeout, tuning.max_threads)
    client._retry = 0
    client._retry_wait = 0
    client._retry_codes = []


class SdkCalls:
    """Runs SDK calls in worker threads (at most `max_threads` at once) and translates their failures once."""

    def __init__(self, tuning: AlpacaTuning, secrets: Sequence[str]) -> None:
        self._tuning = tuning
        self._secrets = tuple(secrets)
        self._limiter = anyio.CapacityLimiter(tuning.max_threads)

    async def read(self, what: str, call: Callable[[], T]) -> T:
        """An idempotent call: retried after a temporary failure, with an awaited backoff."""
        attempt = 0
        while True:
            try:
                return await self._once(what, call)
            except TemporaryFailure:
                if attempt >= self._tuning.read_retries:
                    raise
                attempt += 1
                await anyio.sleep(self._tuning.retry_backoff * attempt)

    async def once(self, what: str, call: Callable[[], T]) -> T:
        """Tried once: calls that change state at Alpaca, and the start-up check (which must not linger)."""
        return await self._once(what, call)

    async def _once(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        except CatalystError:
            raise
        except (APIError, RequestException, ValueError) as exc:
            error = wire.translate(exc, self._secrets, timeout=self._tuning.timeout)
            log.warning("alpaca: %s failed: %s", what, error)
            raise error from None


def _expect(value: object, kind: type[M]) -> M:
    if not isinstance(value, kind):
        raise TemporaryFailure(f"Alpaca sent an unexpected answer ({type(value).__name__})")
    return value


def _none_if_missing(call: Callable[[], T]) -> Callable[[], T | None]:
    """`call`, answering None where Alpaca answers 404."""

    def run() -> T | None:
        try:
            return call()
        except APIError as exc:
            if wire.status_of(exc) == 404:
                return None
            raise

    return run


class AlpacaBroker:
    """An Alpaca account. Every order carries the caller's client_order_id, which Alpaca keeps unique."""

    name = "alpaca"

    def __init__(
        self, client: TradingClient, calls: SdkCalls, *, mode: BrokerMode, clock: Clock, cancel_wait: float
    ) -> None:
        self._client = client
        self._calls = calls
        self._mode = mode
        self._clock = clock
        self._cancel_wait = cancel_wait

    @property
    def mode(self) -> BrokerMode:
        return self._mode

    # --- account --------------------------------------------------------------------------------------

    async def get_account(self) -> Account:
        return wire.account(_expect(await self._calls.read("account", self._client.get_account), TradeAccount))

    async def get_positions(self) -> list[BrokerPosition]:
        raw = _expect(await self._calls.read("positions", self._client.get_all_positions), list)
        return [wire.position(_expect(p, Position)) for p in raw]

    async def verify(self) -> None:
        """Fail start-up on credentials or an account that cannot trade; a passing outage only warns."""
        try:
            raw = _expect(await self._calls.once("account", self._client.get_account), TradeAccount)
        except TemporaryFailure as exc:
            log.warning("alpaca: could not check the account at start-up: %s", exc)
            return
        except BrokerRejected as exc:
            raise OperatorNeeded(f"the Alpaca endpoint did not serve the account: {exc}") from None
        if raw.trading_blocked or raw.account_blocked:
            raise OperatorNeeded("the Alpaca account is blocked from trading")

    # --- orders ---------------------------------------------------------------------------------------

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        order = wire.wire_order(intent, client_order_id)
        log.info(
            "alpaca: submit %s %s %s %s (%s)",
            client_order_id,
            intent.side.value,
            intent.quantity,
            intent.symbol,
            order.order_class.value,
        )
        try:
            sent = _expect(
                await self._calls.once("submit order", lambda: self._client.submit_order(order.request)), Order
            )
        except BrokerRejected:
            # A client_order_id Alpaca already holds is refused (422): that order is this one.
            existing = await self.get_order_by_client_id(client_order_id)
            if existing is not None:
                return existing
            raise
        if order.legs and wire.accepted_legs(sent) != order.legs:
            final = await self.cancel_order(str(sent.id))
            log.error("alpaca: %s came back without its exit legs; the entry is now %s", client_order_id, final.status)
            raise BrokerRejected(
                f"Alpaca accepted {client_order_id} without its stop-loss/take-profit legs; "
                f"the entry was cancelled ({final.status.value})"
            )
        return await self._with_fills(sent)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        lookup = _none_if_missing(lambda: self._client.get_order_by_client_id(client_order_id))
        found = await self._calls.read("order lookup", lookup)
        return None if found is None else await self._with_fills(_expect(found, Order))

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        """Working orders, exit legs of brackets included (they hold shares that an exit needs)."""
        query = GetOrdersRequest(
            status=QueryOrderStatus.OPEN,
            symbols=[symbol] if symbol else None,
            limit=500,
            nested=False,
            direction=Sort.ASC,
        )
        raw = _expect(await self._calls.read("open orders", lambda: self._client.get_orders(query)), list)
        orders = [_expect(o, Order) for o in raw]
        fills = await self._fills_for(orders)
        return [wire.broker_order(o, fills) for o in orders]

    async def cancel_order(self, broker_order_id: str) -> BrokerOrder:
        """Cancel and await the order's final state (a cancel at Alpaca is asynchronous)."""
        try:
            order_id = uuid.UUID(broker_order_id)
        except ValueError:
            raise InvalidInput(f"unknown broker order {broker_order_id}") from None

        def cancel() -> None:
            try:
                self._client.cancel_order_by_id(order_id)
            except APIError as exc:
                if wire.status_of(exc) == 404:
                    raise InvalidInput(f"unknown broker order {broker_order_id}") from None
                if wire.status_of(exc) != 422:  # 422: no longer cancelable; its final state says why
                    raise

        await self._calls.once("cancel order", cancel)
        deadline = anyio.current_time() + self._cancel_wait
        delay = 0.02
        while True:
            order = _expect(await self._calls.read("order", lambda: self._client.get_order_by_id(order_id)), Order)
            if wire.is_final(wire.wire_value(order.status)):
                return await self._with_fills(order)
            if anyio.current_time() + delay > deadline:
                raise TemporaryFailure(
                    f"the cancel of order {broker_order_id} was not confirmed within {self._cancel_wait:g} s"
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _with_fills(self, order: Order) -> BrokerOrder:
        return wire.broker_order(order, await self._fills_for([order]))

    async def _fills_for(self, orders: Sequence[Order]) -> list[Fill]:
        """The fills of `orders` from the account's FILL activities (the SDK has no call for them)."""
        filled = [o for o in orders if (wire.dec_or_none(o.filled_qty) or 0) > 0]
        if not filled:
            return []
        wanted = {str(o.id) for o in filled}
        after = min(o.submitted_at for o in filled) - timedelta(seconds=1)
        fills: list[Fill] = []
        token: str | None = None
        for _ in range(_ACTIVITY_PAGES):
            params: dict[str, Any] = {"after": after.isoformat(), "direction": "asc", "page_size": _ACTIVITY_PAGE}
            if token is not None:
                params["page_token"] = token
            page = await self._calls.read("fills", functools.partial(self._fill_page, params))
            fills += [f for f in page if f.broker_order_id in wanted]
            if len(page) < _ACTIVITY_PAGE:
                break
            token = page[-1].fill_id
        return fills

    def _fill_page(self, params: dict[str, Any]) -> list[Fill]:
        return wire.fills_from_activities(self._client.get("/account/activities/FILL", params))

    # --- clock, calendar, assets ----------------------------------------------------------------------

    async def is_market_open(self) -> bool:
        """Alpaca's /v2/clock decides."""
        return bool(_expect(await self._calls.read("clock", self._client.get_clock), AlpacaClock).is_open)

    async def now(self) -> datetime:
        return self._clock.now()  # Alpaca runs on real time; the injected clock is it

    async def get_calendar(self, start: date, end: date) -> list[wire.TradingDay]:
        query = GetCalendarRequest(start=start, end=end)
        raw = _expect(await self._calls.read("calendar", lambda: self._client.get_calendar(query)), list)
        return [wire.trading_day(c.date, c.open, c.close) for c in (_expect(r, Calendar) for r in raw)]

    async def get_asset(self, symbol: str) -> wire.AssetInfo | None:
        found = await self._calls.read("asset", _none_if_missing(lambda: self._client.get_asset(symbol)))
        if found is None:
            return None
        asset = _expect(found, Asset)
        return wire.AssetInfo(asset.symbol, asset.tradable, asset.shortable, asset.fractionable)


@asynccontextmanager
async def open_alpaca(
    settings: Settings, profile: MarketProfile, clock: Clock
) -> AsyncIterator[tuple[Broker, MarketData]]:
    """The Alpaca broker and market data for `settings`; fails with one line if they cannot be used."""
    if profile.market is not Market.US:
        raise OperatorNeeded("Alpaca trades US equities only: set CATALYST_MARKET=US")
    where = endpoints_for(settings)
    key, secret = _credentials(settings)
    tuning = AlpacaTuning.from_settings(settings)
    trading = TradingClient(key, secret, paper=where.mode is BrokerMode.PAPER, url_override=where.trading_url)
    data = StockHistoricalDataClient(key, secret, url_override=where.data_url)
    for client in (trading, data):
        harden(client, tuning)
    calls = SdkCalls(tuning, (key, secret))
    broker = AlpacaBroker(trading, calls, mode=where.mode, clock=clock, cancel_wait=tuning.cancel_wait)
    market_data = AlpacaMarketData(data, calls, feed=settings.alpaca_feed, clock=clock)
    log.info("alpaca: %s trading at %s, data at %s (%s feed)", where.mode.value, where.trading_url, where.data_url,
             settings.alpaca_feed)  # fmt: skip
    try:
        await broker.verify()
        yield broker, market_data
    finally:
        for client in (trading, data):
            client._session.close()
