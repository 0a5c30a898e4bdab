"""A local emulator of Alpaca's trading and market-data REST API, for the real alpaca-py SDK to talk to.

Alpaca's documented JSON shapes (`alpaca_payloads`), priced by the simulated exchange's pure model
(`sim_prices`) at the injected clock, so quotes, fills and bars agree. One cash account: no margin, no
shorting; exit legs are recorded but never trigger. Faults are injected per route: an HTTP status, a request
held past the client's timeout (before or after the order is stored), a connection dropped after the order
is stored; and per order: partial fills, rejections, exit legs dropped, cancels pending for a few reads.
`serve(emulator)` runs it with uvicorn on 127.0.0.1, port 0, inside the caller's event loop.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from catalyst_mcp.brokers.sim_prices import Instrument, universe_for
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.ports import Clock
from tests.fakes import alpaca_payloads as js
from tests.fakes.alpaca_market import MarketRoutes
from tests.fakes.alpaca_payloads import PROFILE, EmuOrder, error

WORKING = {"new", "accepted", "held", "partially_filled", "pending_cancel", "pending_new"}
HOLD_LIMIT = 30.0  # seconds a held request waits for its release at most
Handler = Callable[..., Awaitable[Response]]


@dataclass
class Fault:
    """One injected behaviour for `times` requests matching a method and a path (a trailing '*' is a prefix).

    kind: "status" (answer `status` with `message`), "hang_before" / "hang_after" (hold the request until
    released, before or after handling it), "drop_after" (handle it, then close the connection unanswered).
    """

    method: str
    path: str
    kind: str
    status: int = 500
    message: str = "internal server error"
    times: int = 1
    arrived: anyio.Event = field(default_factory=anyio.Event)  # a matching request came in
    released: anyio.Event = field(default_factory=anyio.Event)
    handled: anyio.Event = field(default_factory=anyio.Event)  # ... and was handled (answered or not)

    def matches(self, method: str, path: str) -> bool:
        if self.times <= 0 or method != self.method:
            return False
        return path.startswith(self.path[:-1]) if self.path.endswith("*") else path == self.path


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _qty(value: Any) -> Decimal:
    """Alpaca answers whole quantities without a fraction ("10", not "10.0")."""
    d = _dec(value)
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d


class AlpacaEmulator(MarketRoutes):
    """One Alpaca account and its market, with hooks for tests."""

    def __init__(self, clock: Clock, *, key_id: str, secret_key: str, seed: int = 7, cash: str = "100000") -> None:
        self.clock = clock
        self.seed = seed
        self._auth = (key_id, secret_key)
        self.universe: dict[str, Instrument] = dict(universe_for(Market.US))
        self.cash = self.starting_cash = Decimal(cash)
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (quantity, average entry price)
        self.orders: dict[str, EmuOrder] = {}
        self.activities: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # method, path, query, JSON body
        self.faults: list[Fault] = []
        self.partial_share: Decimal | None = None  # the next fill takes this share of the order
        self.reject_reason: str | None = None  # the next order is accepted, then rejected
        self.drop_legs = False  # the next order comes back without its exit legs
        self.slow_cancel_reads = 0  # the next cancel stays pending_cancel for this many reads
        self.app = _Dropping(Starlette(routes=self._routes()))

    # --- test hooks -------------------------------------------------------------------------------------

    def inject(self, method: str, path: str, kind: str = "status", **options: Any) -> Fault:
        fault = Fault(method, path, kind, **options)
        self.faults.append(fault)
        return fault

    def release_all(self) -> None:
        for fault in self.faults:
            fault.released.set()

    def order_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of every order submitted, as received."""
        return [body for method, path, _, body in self.requests if (method, path) == ("POST", "/v2/orders")]

    def top_orders(self) -> list[EmuOrder]:
        return [o for o in self.orders.values() if o.parent is None]

    def by_client_id(self, client_order_id: str) -> EmuOrder | None:
        return next((o for o in self.orders.values() if o.client_order_id == client_order_id), None)

    def fill(self, order_id: str, qty: Decimal | None = None) -> None:
        """Fill `qty` (default: the rest) of an open order at the current price, as the market would."""
        order = self.orders[order_id]
        self._fill(order, qty or order.qty - order.filled_qty, self._price(order.symbol, order.side))

    # --- the account and its orders ----------------------------------------------------------------------

    def _price(self, symbol: str, side: str) -> Decimal:
        q = self.quote(symbol)
        return q.ask if side == "buy" else q.bid

    def _available(self, symbol: str) -> Decimal:
        """Shares free to sell: the position less what open sell orders hold (a bracket's legs hold once)."""
        held, groups = Decimal(0), set()
        for o in self.orders.values():
            if o.symbol == symbol and o.side == "sell" and o.status in WORKING:
                if o.parent is None:
                    held += o.qty - o.filled_qty
                elif o.parent not in groups:
                    groups.add(o.parent)
                    held += o.qty
        return self.positions.get(symbol, (Decimal(0), Decimal(0)))[0] - held

    def _fill(self, order: EmuOrder, qty: Decimal, price: Decimal) -> None:
        now = self.clock.now()
        held, avg = self.positions.get(order.symbol, (Decimal(0), Decimal(0)))
        signed = qty if order.side == "buy" else -qty
        if held + signed == 0:
            self.positions.pop(order.symbol, None)
        else:
            new_avg = (avg * held + price * qty) / (held + qty) if order.side == "buy" else avg
            self.positions[order.symbol] = (held + signed, new_avg)
        self.cash -= signed * price
        total = order.filled_qty + qty
        order.filled_avg_price = ((order.filled_avg_price or Decimal(0)) * order.filled_qty + price * qty) / total
        order.filled_qty, order.updated_at = total, now
        order.status = "filled" if total == order.qty else "partially_filled"
        if order.status == "filled":
            order.filled_at = now
            for leg in (self.orders[i] for i in order.legs):
                leg.status = "new" if leg.type == "limit" else "held"
        self.activities.append(js.fill_activity(order, qty, price, now))

    def _match(self) -> None:
        """Execute open entries whose price is reachable, while the market is open."""
        if not PROFILE.is_open(self.clock.now()):
            return
        for order in [o for o in self.orders.values() if o.parent is None and o.status in ("accepted", "new")]:
            price, limit = self._price(order.symbol, order.side), order.limit_price
            if limit is not None and (price > limit if order.side == "buy" else price < limit):
                order.status = "new"
                continue
            qty = order.qty - order.filled_qty
            if self.partial_share is not None:
                qty = max(Decimal(1), (qty * self.partial_share).to_integral_value(ROUND_DOWN))
                self.partial_share = None
            self._fill(order, qty, price)

    def _order_json(self, order: EmuOrder, nested: bool = True) -> dict[str, Any]:
        legs = [self._order_json(self.orders[i]) for i in order.legs] if nested and order.legs else None
        return js.order_json(order, legs)

    def _refuse(self, body: dict[str, Any]) -> JSONResponse | None:
        """Alpaca's synchronous refusals of a new order: 422 for the request, 403 for money or shares."""
        symbol, side, qty = str(body.get("symbol")), body.get("side"), _qty(body.get("qty", "0"))
        take, stop = body.get("take_profit") or {}, body.get("stop_loss") or {}
        if self.by_client_id(str(body.get("client_order_id"))) is not None:
            return error(422, 40010001, "client_order_id must be unique")
        if symbol not in self.universe:
            return error(422, 40010001, f'asset "{symbol}" not found')
        if qty <= 0 or qty != qty.to_integral_value() or side not in ("buy", "sell"):
            return error(422, 40010001, "qty must be a positive whole number and side buy or sell")
        prices = {"limit_price": body.get("limit_price")} | {f"take_profit.{k}": v for k, v in take.items()}
        for name, value in (prices | {f"stop_loss.{k}": v for k, v in stop.items()}).items():
            if value is not None and _dec(value) != PROFILE.round_to_tick(_dec(value)):
                return error(422, 42210000, f"invalid {name} {value}: sub-penny increment does not fulfill criteria")
        if body.get("order_class") == "bracket" and not (take and stop):
            return error(422, 40010001, "bracket orders must specify both take_profit and stop_loss")
        base, sign = _dec(body.get("limit_price") or self.quote(symbol).last), 1 if side == "buy" else -1
        if "limit_price" in take and sign * (_dec(take["limit_price"]) - base) < Decimal("0.01"):
            return error(422, 42210000, "take_profit.limit_price must be beyond the base price by 0.01")
        if "stop_price" in stop and sign * (base - _dec(stop["stop_price"])) < Decimal("0.01"):
            return error(422, 42210000, "stop_loss.stop_price must be beyond the base price by 0.01")
        if side == "buy" and qty * self._price(symbol, "buy") > self.cash:
            return error(403, 40310000, "insufficient buying power")
        if side == "sell" and qty > (available := self._available(symbol)):
            return error(
                403, 40310000, f"insufficient qty available for order (requested: {qty}, available: {available})"
            )
        return None

    def _create(self, body: dict[str, Any]) -> EmuOrder:
        now = self.clock.now()
        order = EmuOrder(
            str(uuid.uuid4()),
            body.get("client_order_id") or str(uuid.uuid4()),
            body["symbol"],
            body["side"],
            _qty(body["qty"]),
            body["type"],
            body.get("order_class") or "simple",
            now,
            limit_price=None if body.get("limit_price") is None else _dec(body["limit_price"]),
        )
        self.orders[order.id] = order
        exit_side = "sell" if order.side == "buy" else "buy"
        specs = [("limit", body.get("take_profit")), ("stop", body.get("stop_loss"))]
        for kind, spec in specs if order.order_class in ("bracket", "oto") and not self.drop_legs else []:
            if spec:
                leg = EmuOrder(
                    str(uuid.uuid4()),
                    str(uuid.uuid4()),
                    order.symbol,
                    exit_side,
                    order.qty,
                    kind,
                    order.order_class,
                    now,
                    status="held",
                    parent=order.id,
                )
                leg.limit_price = _dec(spec["limit_price"]) if kind == "limit" else None
                leg.stop_price = _dec(spec["stop_price"]) if kind == "stop" else None
                self.orders[leg.id] = leg
                order.legs.append(leg.id)
        self.drop_legs = False
        if self.reject_reason is not None:
            order.status, order.failed_at, self.reject_reason = "rejected", now, None
        self._match()
        return order

    def _cancel(self, order: EmuOrder) -> None:
        group = [order] + [self.orders[i] for i in order.legs]
        if order.parent is not None:
            group = [self.orders[i] for i in self.orders[order.parent].legs]  # one leg cancels its sibling
        now = self.clock.now()
        for o in group:
            if o.status in WORKING:
                o.status, o.canceled_at, o.updated_at = "canceled", now, now
        if self.slow_cancel_reads:
            order.status, order.pending_cancel_reads = "pending_cancel", self.slow_cancel_reads
            self.slow_cancel_reads = 0

    # --- trading routes ----------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        table: list[tuple[str, Handler, list[str]]] = [
            ("/v2/account", self.account, ["GET"]),
            ("/v2/positions", self.positions_route, ["GET"]),
            ("/v2/orders", self.orders_route, ["GET", "POST"]),
            ("/v2/orders:by_client_order_id", self.order_by_client_id, ["GET"]),
            ("/v2/orders/{order_id}", self.order_route, ["GET", "DELETE"]),
            ("/v2/clock", self.clock_route, ["GET"]),
            ("/v2/calendar", self.calendar, ["GET"]),
            ("/v2/assets", self.assets, ["GET"]),
            ("/v2/assets/{symbol}", self.asset, ["GET"]),
            ("/v2/account/activities", self.activities_route, ["GET"]),
            ("/v2/account/activities/{kind}", self.activities_route, ["GET"]),
            ("/v2/stocks/snapshots", self.snapshots, ["GET"]),
            ("/v2/stocks/quotes/latest", self.latest_quotes, ["GET"]),
            ("/v2/stocks/bars", self.bars, ["GET"]),
        ]
        return [Route(path, self._guard(handler), methods=methods) for path, handler, methods in table]

    def _guard(self, handler: Handler) -> Handler:
        """Record the request, check the keys, apply a matching fault, settle resting orders, answer."""

        async def run(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw else None
            self.requests.append((request.method, request.url.path, dict(request.query_params), body))
            if (request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY")) != self._auth:
                return error(401, 40110000, "request is not authorized")
            fault = next((f for f in self.faults if f.matches(request.method, request.url.path)), None)
            if fault is not None:
                fault.times -= 1
                fault.arrived.set()
                if fault.kind == "status":
                    return error(fault.status, fault.status * 100000, fault.message)
                if fault.kind == "hang_before":
                    with anyio.move_on_after(HOLD_LIMIT):
                        await fault.released.wait()
            self._match()
            response = await (handler(request) if body is None else handler(request, body))
            if fault is not None and fault.kind == "hang_after":
                with anyio.move_on_after(HOLD_LIMIT):
                    await fault.released.wait()
            if fault is not None:
                fault.handled.set()
                if fault.kind == "drop_after":
                    return _NoAnswer()
            return response

        return run

    async def account(self, request: Request) -> Response:
        value = sum((q * self.quote(s).last for s, (q, _) in self.positions.items()), Decimal(0))
        return JSONResponse(js.account_json(self.cash, value, self.starting_cash))

    async def positions_route(self, request: Request) -> Response:
        rows = [
            js.position_json(s, q, avg, self.quote(s).last, self._available(s))
            for s, (q, avg) in sorted(self.positions.items())
        ]
        return JSONResponse(rows)

    async def orders_route(self, request: Request, body: dict[str, Any] | None = None) -> Response:
        if request.method == "POST":
            assert body is not None
            return self._refuse(body) or JSONResponse(self._order_json(self._create(body)))
        q = request.query_params
        status, symbols = q.get("status", "open"), set(filter(None, q.get("symbols", "").split(",")))
        nested = q.get("nested", "false").lower() == "true"
        found = [o for o in self.orders.values() if (not nested or o.parent is None)]
        found = [o for o in found if (not symbols or o.symbol in symbols)]
        found = [o for o in found if status == "all" or (o.status in WORKING) == (status == "open")]
        found.sort(key=lambda o: o.created_at, reverse=q.get("direction", "desc") == "desc")
        return JSONResponse([self._order_json(o, nested) for o in found[: int(q.get("limit", "50"))]])

    async def order_by_client_id(self, request: Request) -> Response:
        order = self.by_client_id(request.query_params.get("client_order_id", ""))
        return JSONResponse(self._order_json(order)) if order else error(404, 40410000, "order not found")

    async def order_route(self, request: Request) -> Response:
        order = self.orders.get(request.path_params["order_id"])
        if order is None:
            return error(404, 40410000, "order not found")
        if request.method == "DELETE":
            if order.status not in WORKING or order.status == "pending_cancel":
                return error(422, 42210000, f"order is not cancelable (status {order.status})")
            self._cancel(order)
            return Response(status_code=204)
        if order.pending_cancel_reads:
            order.pending_cancel_reads -= 1
            order.status = "pending_cancel" if order.pending_cancel_reads else "canceled"
        return JSONResponse(self._order_json(order))

    async def activities_route(self, request: Request) -> Response:
        q = request.query_params
        kinds = (request.path_params.get("kind") or q.get("activity_types", "FILL")).split(",")
        rows = [a for a in self.activities if a["activity_type"] in kinds]
        if "after" in q:
            after = datetime.fromisoformat(q["after"])
            rows = [a for a in rows if datetime.fromisoformat(a["transaction_time"]) > after]
        if q.get("direction", "desc") == "desc":
            rows.reverse()
        if "page_token" in q:
            ids = [a["id"] for a in rows]
            rows = rows[ids.index(q["page_token"]) + 1 :] if q["page_token"] in ids else []
        return JSONResponse(rows[: int(q.get("page_size", "100"))])


class _NoAnswer(Response):
    """Send nothing: `_Dropping` then makes uvicorn close the connection unanswered."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["emulator.dropped"] = True


class _Dropping:
    """The app; it returns a value for a dropped request, on which uvicorn closes the connection."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        await self.app(scope, receive, send)
        return "dropped" if scope.get("emulator.dropped") else None


@asynccontextmanager
async def serve(emulator: AlpacaEmulator) -> AsyncIterator[str]:
    """Serve `emulator` on 127.0.0.1 (a free port) in this event loop; yields its origin URL."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only then; without it keep-alive requests wait ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from here on: no need to wait for uvicorn's start-up
    config = uvicorn.Config(
        emulator.app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server._serve, [sock])
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            emulator.release_all()
            server.should_exit = True
