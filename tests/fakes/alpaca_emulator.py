"""A local emulator of Alpaca's trading and market-data REST API, for the real alpaca-py SDK to talk to.

Alpaca's documented JSON shapes (`alpaca_payloads`), priced by the simulated exchange's pure model
(`sim_prices`) at the injected clock, so quotes, fills and bars agree; a test may pin a price. One cash
account (`alpaca_account`: brackets, one-triggers-other and one-cancels-other groups whose legs trigger on the
price, shares held by working exit orders). Every request is counted per route (`count`, `reset_counts`).
Faults are injected per route: an HTTP status, a request held past the client's timeout (before or after the
order is stored), a connection dropped after the order is stored; and per order: partial fills, rejections,
exit legs dropped, cancels pending for a few reads. `serve(emulator)` runs it with uvicorn on 127.0.0.1,
port 0, inside the caller's event loop.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from catalyst_mcp.ports import Clock
from tests.fakes import alpaca_payloads as js
from tests.fakes.alpaca_account import WORKING, AlpacaAccount
from tests.fakes.alpaca_market import MarketRoutes
from tests.fakes.alpaca_payloads import EmuOrder, error

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


class AlpacaEmulator(AlpacaAccount):
    """One Alpaca account and its market, with hooks for tests."""

    def __init__(self, clock: Clock, *, key_id: str, secret_key: str, seed: int = 7, cash: str = "100000") -> None:
        MarketRoutes.__init__(self, clock, seed)
        AlpacaAccount.__init__(self, cash)
        self._auth = (key_id, secret_key)
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # method, path, query, JSON body
        self.counts: Counter[tuple[str, str]] = Counter()  # (method, route) -> requests since the last reset
        self.faults: list[Fault] = []
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

    def count(self, route: str | None = None, method: str | None = None) -> int:
        """Requests since the last `reset_counts`: all of them, or those to one route (as declared, e.g.
        ``/v2/orders/{order_id}``, ``/v2/account/activities/{kind}``), optionally of one method."""
        return sum(n for (m, r), n in self.counts.items() if route in (None, r) and method in (None, m))

    def reset_counts(self) -> None:
        self.counts.clear()

    # --- routes -------------------------------------------------------------------------------------------

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
        return [Route(path, self._guard(path, handler), methods=methods) for path, handler, methods in table]

    def _guard(self, route: str, handler: Handler) -> Handler:
        """Count and record the request, check the keys, apply a matching fault, settle working orders,
        answer."""

        async def run(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw else None
            self.requests.append((request.method, request.url.path, dict(request.query_params), body))
            self.counts[request.method, route] += 1
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
            self.match()
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

    def _order_json(self, order: EmuOrder, nested: bool = True) -> dict[str, Any]:
        legs = [self._order_json(leg) for leg in self.legs_of(order)] if nested and order.legs else None
        return js.order_json(order, legs)

    async def account(self, request: Request) -> Response:
        value = sum((q * self.quote(s).last for s, (q, _) in self.positions.items()), Decimal(0))
        return JSONResponse(js.account_json(self.cash, value, self.starting_cash))

    async def positions_route(self, request: Request) -> Response:
        rows = [
            js.position_json(s, q, avg, self.quote(s).last, self._available(s, "sell" if q > 0 else "buy"))
            for s, (q, avg) in sorted(self.positions.items())
        ]
        return JSONResponse(rows)

    async def orders_route(self, request: Request, body: dict[str, Any] | None = None) -> Response:
        if request.method == "POST":
            assert body is not None
            return self.refuse(body) or JSONResponse(self._order_json(self.create(body)))
        q = request.query_params
        status, symbols = q.get("status", "open"), set(filter(None, q.get("symbols", "").split(",")))
        nested = q.get("nested", "false").lower() == "true"
        found = [o for o in self.orders.values() if (not nested or o.parent is None)]
        found = [o for o in found if (not symbols or o.symbol in symbols)]
        found = [o for o in found if status == "all" or (o.status in WORKING) == (status == "open")]
        if "after" in q:
            found = [o for o in found if o.created_at > datetime.fromisoformat(q["after"])]
        if "until" in q:
            found = [o for o in found if o.created_at < datetime.fromisoformat(q["until"])]
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
            self.cancel(order)
            return Response(status_code=204)
        if order.pending_cancel_reads:
            order.pending_cancel_reads -= 1
            order.status = "pending_cancel" if order.pending_cancel_reads else "canceled"
        return JSONResponse(self._order_json(order, request.query_params.get("nested", "true") == "true"))

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
