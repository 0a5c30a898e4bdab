"""Alpaca behind the Broker port, through the official alpaca-py SDK.

The SDK is synchronous (requests), sets no timeout and retries 429/504 with blocking sleeps: `alpaca_calls`
runs every call in a worker thread under a bounded limiter, with a timeout and without the SDK's retries.
Orders are never retried: after an ambiguous submit the caller looks the order up by client_order_id. Paper
unless live is asked for twice. Each operation costs as few requests as Alpaca allows: an order's answer
carries its cumulative fill (the account's fill activities are read only for a partial fill), and the
market clock is read once per open or close.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import anyio
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Asset, Calendar, Order, Position, TradeAccount
from alpaca.trading.models import Clock as AlpacaClock
from alpaca.trading.requests import GetCalendarRequest, GetOrdersRequest

from catalyst_mcp.brokers import alpaca_mapping as wire
from catalyst_mcp.brokers import alpaca_orders as orders
from catalyst_mcp.brokers.alpaca_calls import SdkCalls, expect, harden, none_if_missing
from catalyst_mcp.brokers.alpaca_config import AlpacaTuning, credentials, endpoints_for
from catalyst_mcp.brokers.alpaca_data import AlpacaMarketData
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode, Market, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import Account, BrokerOrder, BrokerPosition, Fill, OrderIntent
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData

log = logging.getLogger(__name__)

_ACTIVITY_PAGE: Final = 100
_ACTIVITY_PAGES: Final = 20
_ORDER_PAGE: Final = 500  # Alpaca's largest page of orders
_KNOWN_PARENTS: Final = 10_000  # order ids remembered with their parent's (facts that never change)
_PARENT_SLACK: Final = timedelta(minutes=1)  # a leg is created with its parent: look this far past it


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
        self._market_clock: wire.MarketClock | None = None
        self._clock_lock = anyio.Lock()
        # Which order each protective leg belongs to: Alpaca lists working legs flat, without their parent.
        self._parents: dict[str, str | None] = {}

    @property
    def mode(self) -> BrokerMode:
        return self._mode

    # --- account --------------------------------------------------------------------------------------

    async def get_account(self) -> Account:
        return wire.account(expect(await self._calls.read("account", self._client.get_account), TradeAccount))

    async def get_positions(self) -> list[BrokerPosition]:
        raw = expect(await self._calls.read("positions", self._client.get_all_positions), list)
        return [wire.position(expect(p, Position)) for p in raw]

    async def verify(self) -> None:
        """Fail start-up on credentials or an account that cannot trade; a passing outage only warns."""
        try:
            raw = expect(await self._calls.once("account", self._client.get_account), TradeAccount)
        except TemporaryFailure as exc:
            log.warning("alpaca: could not check the account at start-up: %s", exc)
            return
        except BrokerRejected as exc:
            raise OperatorNeeded(f"the Alpaca endpoint did not serve the account: {exc}") from None
        if raw.trading_blocked or raw.account_blocked:
            raise OperatorNeeded("the Alpaca account is blocked from trading")

    # --- orders ---------------------------------------------------------------------------------------

    async def submit_order(self, intent: OrderIntent, client_order_id: str) -> BrokerOrder:
        order = orders.wire_order(intent, client_order_id)
        log.info(
            "alpaca: submit %s %s %s %s (%s)",
            client_order_id,
            intent.side.value,
            intent.quantity,
            intent.symbol,
            order.order_class.value,
        )
        return await self._place(order, client_order_id, "entry")

    async def protect(
        self,
        symbol: str,
        side: Side,
        quantity: Decimal,
        stop_loss: Decimal | None,
        take_profit: Decimal | None,
        client_order_id: str,
    ) -> list[BrokerOrder]:
        """Good-till-cancelled protection of a position held now: one-cancels-other for both prices (the
        take-profit limit carries `client_order_id`, its stop leg follows), else one stop or limit order."""
        order = orders.protect_order(symbol, side, quantity, stop_loss, take_profit, client_order_id)
        log.info(
            "alpaca: protect %s %s %s %s stop %s target %s (%s)",
            client_order_id,
            side.value,
            quantity,
            symbol,
            stop_loss,
            take_profit,
            order.order_class.value,
        )
        placed = await self._place(order, client_order_id, "order")
        return [dataclasses.replace(placed, legs=()), *placed.legs]

    async def _place(self, order: orders.WireOrder, client_order_id: str, what: str) -> BrokerOrder:
        """Send `order` once; check that Alpaca took the legs that were sent (it ignores legs it does not
        take), cancelling the order if not."""
        try:
            sent = expect(
                await self._calls.once("submit order", lambda: self._client.submit_order(order.request)), Order
            )
        except BrokerRejected:
            # A client_order_id Alpaca already holds is refused: that order is this one.
            existing = await self.get_order_by_client_id(client_order_id)
            if existing is not None:
                return existing
            raise
        self._learn(sent)
        if not orders.confirmed(sent, order):
            final = await self.cancel_order(str(sent.id))
            log.error("alpaca: %s came back without its exit legs; the %s is now %s with %s filled", client_order_id,
                      what, final.status.value, final.filled_quantity)  # fmt: skip
            if final.filled_quantity > 0:
                return final  # it traded before the cancel: a refusal would hide shares the broker holds
            raise BrokerRejected(
                f"Alpaca accepted {client_order_id} without its stop-loss/take-profit legs; "
                f"the {what} was cancelled ({final.status.value})"
            )
        return await self._with_fills(sent)

    async def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        lookup = none_if_missing(lambda: self._client.get_order_by_client_id(client_order_id))
        found = await self._calls.read("order lookup", lookup)
        if found is None:
            return None
        order = expect(found, Order)
        self._learn(order)
        return await self._with_fills(order)

    async def get_open_orders(self, symbol: str | None = None) -> list[BrokerOrder]:
        """Working orders, flat: protective legs each on their own (they hold shares that an exit needs),
        with their parent's id."""
        query = GetOrdersRequest(
            status=QueryOrderStatus.OPEN,
            symbols=[symbol] if symbol else None,
            limit=_ORDER_PAGE,
            nested=False,
            direction=Sort.ASC,
        )
        raw = expect(await self._calls.read("open orders", lambda: self._client.get_orders(query)), list)
        working = [expect(o, Order) for o in raw]
        strangers = [o for o in working if _grouped(o) and str(o.id) not in self._parents]
        if strangers:
            await self._find_parents(strangers)
        fills = await self._fills_for(working)
        return [wire.broker_order(o, fills, self._parents.get(str(o.id))) for o in working]

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
            order = expect(await self._calls.read("order", lambda: self._client.get_order_by_id(order_id)), Order)
            if wire.is_final(wire.wire_value(order.status)):
                return await self._with_fills(order, self._parents.get(str(order.id)))
            if anyio.current_time() + delay > deadline:
                raise TemporaryFailure(
                    f"the cancel of order {broker_order_id} was not confirmed within {self._cancel_wait:g} s"
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # --- fills and families ---------------------------------------------------------------------------

    async def _with_fills(self, order: Order, parent_id: str | None = None) -> BrokerOrder:
        return wire.broker_order(order, await self._fills_for(wire.with_legs(order)), parent_id)

    async def _fills_for(self, candidates: Iterable[Order]) -> list[Fill]:
        """The individual fills of the partially filled ones of `candidates`, from the account's FILL
        activities (the SDK has no call for them). A filled or unfilled order needs none: its cumulative
        figures are the truth, so it costs no request."""
        partial = [o for o in candidates if wire.partially_filled(o)]
        if not partial:
            return []
        wanted = {str(o.id) for o in partial}
        after = min(o.submitted_at for o in partial) - timedelta(seconds=1)
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

    def _learn(self, order: Order, parent_id: str | None = None) -> None:
        """Remember which order each leg of `order` (a nested answer) belongs to."""
        if not _grouped(order) and parent_id is None:
            return
        self._parents[str(order.id)] = parent_id
        for leg in order.legs or ():
            self._learn(leg, str(order.id))
        while len(self._parents) > _KNOWN_PARENTS:
            del self._parents[next(iter(self._parents))]

    async def _find_parents(self, legs: Sequence[Order]) -> None:
        """Find the groups of working orders this process has not seen placed: one nested listing of the
        latest orders of their symbols up to their creation (a leg is created with its parent)."""
        query = GetOrdersRequest(
            status=QueryOrderStatus.ALL,
            symbols=sorted({o.symbol for o in legs if o.symbol}) or None,
            until=max(o.created_at for o in legs) + _PARENT_SLACK,
            limit=_ORDER_PAGE,
            nested=True,
            direction=Sort.DESC,
        )
        raw = expect(await self._calls.read("order groups", lambda: self._client.get_orders(query)), list)
        for top in raw:
            self._learn(expect(top, Order))
        lost = [str(o.id) for o in legs if str(o.id) not in self._parents]
        if lost:
            log.warning("alpaca: no parent found for working order(s) %s; listed as their own", ", ".join(lost))

    # --- clock, calendar, assets ----------------------------------------------------------------------

    async def is_market_open(self) -> bool:
        """Alpaca's /v2/clock decides. Its answer stands until its next open or close (by the injected
        clock), so it is read once per session and once per transition; a failed read raises."""
        known = self._market_clock
        if known is None or not known.holds_at(self._clock.now()):
            async with self._clock_lock:
                known = self._market_clock
                if known is None or not known.holds_at(self._clock.now()):
                    read_at = self._clock.now()
                    raw = expect(await self._calls.read("clock", self._client.get_clock), AlpacaClock)
                    known = self._market_clock = wire.market_clock(raw, read_at)
        return known.is_open

    async def now(self) -> datetime:
        return self._clock.now()  # Alpaca runs on real time; the injected clock is it

    async def get_calendar(self, start: date, end: date) -> list[wire.TradingDay]:
        query = GetCalendarRequest(start=start, end=end)
        raw = expect(await self._calls.read("calendar", lambda: self._client.get_calendar(query)), list)
        return [wire.trading_day(c.date, c.open, c.close) for c in (expect(r, Calendar) for r in raw)]

    async def get_asset(self, symbol: str) -> wire.AssetInfo | None:
        found = await self._calls.read("asset", none_if_missing(lambda: self._client.get_asset(symbol)))
        if found is None:
            return None
        asset = expect(found, Asset)
        return wire.AssetInfo(asset.symbol, asset.tradable, asset.shortable, asset.fractionable)


def _grouped(order: Order) -> bool:
    """True for an order of a bracket, one-triggers-other or one-cancels-other group."""
    return wire.wire_value(order.order_class) not in ("", "simple")


@dataclass(frozen=True, slots=True)
class Opened:
    """The adapter's two halves over their SDK clients; ``close`` ends the clients' sessions."""

    broker: AlpacaBroker
    market_data: AlpacaMarketData
    clients: tuple[TradingClient, StockHistoricalDataClient]

    def close(self) -> None:
        for client in self.clients:
            client._session.close()


def build_alpaca(settings: Settings, profile: MarketProfile, clock: Clock) -> Opened:
    """The SDK clients and the adapter for ``settings`` (no request is made)."""
    if profile.market is not Market.US:
        raise OperatorNeeded("Alpaca trades US equities only: set CATALYST_MARKET=US")
    where = endpoints_for(settings)
    key, secret = credentials(settings)
    tuning = AlpacaTuning.from_settings(settings)
    trading = TradingClient(key, secret, paper=where.mode is BrokerMode.PAPER, url_override=where.trading_url)
    data = StockHistoricalDataClient(key, secret, url_override=where.data_url)
    for client in (trading, data):
        harden(client, tuning)
    calls = SdkCalls(tuning, (key, secret))
    broker = AlpacaBroker(trading, calls, mode=where.mode, clock=clock, cancel_wait=tuning.cancel_wait)
    market_data = AlpacaMarketData(data, calls, feed=settings.alpaca_feed, clock=clock)
    return Opened(broker, market_data, (trading, data))


@asynccontextmanager
async def open_alpaca(
    settings: Settings, profile: MarketProfile, clock: Clock
) -> AsyncIterator[tuple[Broker, MarketData]]:
    """The Alpaca broker and market data for `settings`, checked with one request; fails with one line if they
    cannot be used. (A server opens them lazily instead: ``alpaca_lazy.open_alpaca_lazily``.)"""
    opened = build_alpaca(settings, profile, clock)
    where = endpoints_for(settings)
    log.info("alpaca: %s trading at %s, data at %s (%s feed)", where.mode.value, where.trading_url, where.data_url,
             settings.alpaca_feed)  # fmt: skip
    try:
        await opened.broker.verify()
        yield opened.broker, opened.market_data
    finally:
        opened.close()
