"""How the adapter drives futu-api: the SDK imported once and tamed, its contexts opened with bounded waits and
replaced when their connection fails, its blocking calls run in worker threads under a limiter with every
failure translated once, and the order updates OpenD pushes collected for waiters.

futu-api at import prints its INFO log lines to **stdout** (the MCP stdio channel), writes a log under the
home directory, and on the main thread replaces the SIGINT handler with one that calls ``os._exit``;
`load_futu` removes the console handler, routes the SDK's stray ``print`` calls to the log, puts the SIGINT
handler back and makes the SDK's threads daemons, before any context exists. A context's constructor retries
forever when OpenD is not there: the port is checked first, and the constructor is allowed one attempt. After
a dropped connection the SDK waits 6 s before it reconnects; the adapter opens a new context at once instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Final, TypeVar

import anyio

from catalyst_mcp.brokers import moomoo_mapping as wire
from catalyst_mcp.brokers.moomoo_config import Tuning
from catalyst_mcp.domain.errors import CatalystError, OperatorNeeded, TemporaryFailure

T = TypeVar("T")
log = logging.getLogger("catalyst_mcp.brokers.moomoo")
READY: Final = "READY"  # futu's ContextStatus.READY
_KEPT_ROWS: Final = 10_000  # order updates remembered (by order id)
_load_lock = threading.Lock()
_futu: ModuleType | None = None


def _stray_print(*args: object, **_: object) -> None:
    log.warning("futu: %s", " ".join(str(a) for a in args)[:500])


def load_futu() -> ModuleType:
    """Import futu-api once and tame it (see the module's docstring). Blocking (~1 s: pandas)."""
    global _futu
    with _load_lock:
        if _futu is not None:
            return _futu
        on_main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT)
        try:
            import futu  # type: ignore[import-untyped]
            from futu.common import ft_logger, handler_context, network_manager, utils  # type: ignore[import-untyped]
        except ImportError as exc:
            raise OperatorNeeded(f"the Moomoo broker needs futu-api: {exc}") from None
        except OSError as exc:  # it creates its log directory under the home directory at import
            raise OperatorNeeded(f"futu-api could not start: {exc}") from None
        finally:
            if on_main:
                signal.signal(signal.SIGINT, previous)
        sdk_log = ft_logger.logger
        sdk_log.enable_console_log(False)
        sdk_log.console_logger.setLevel(logging.CRITICAL + 1)
        for module in (utils, handler_context):
            module.print = _stray_print
        futu.SysConfig.set_all_thread_daemon(True)
        with warnings.catch_warnings():  # its network thread is made a daemon with the deprecated setDaemon
            warnings.simplefilter("ignore", DeprecationWarning)
            network_manager.NetManager.default()
        for name in ("_init_connect_sync", "set_sync_query_connect_timeout", "status"):
            if not hasattr(futu.OpenSecTradeContext, name):
                raise OperatorNeeded(f"this futu-api version lacks {name}: its connections cannot be bounded")
        loaded: ModuleType = futu
        _futu = loaded
        return loaded


def check_port(host: str, port: int, timeout: float) -> bool:
    """True when something accepts connections at host:port (the SDK's constructor would wait forever)."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            return True
    except OSError:
        return False


def password_md5(password: str) -> str:
    """What OpenD's unlock takes: the MD5 of the trade password (the SDK then never holds the password)."""
    return hashlib.md5(password.encode()).hexdigest()


def open_context(futu: ModuleType, kind: str, host: str, port: int, timeout: float) -> Any:
    """A ``trade`` (HK securities) or ``quote`` context, ready, or an error: the port is checked first, the
    constructor is allowed one attempt, and every request of the context times out after `timeout`."""
    if not check_port(host, port, timeout):
        raise TemporaryFailure(f"OpenD is not listening at {host}:{port}")
    base = futu.OpenSecTradeContext if kind == "trade" else futu.OpenQuoteContext

    class Bounded(base):  # type: ignore[misc, valid-type]
        def _init_connect_sync(self) -> int:
            self._query_timeout = timeout
            ret = int(super()._init_connect_sync())
            if ret != 0 and self._catalyst_opening:
                self._auto_reconnect = False  # the constructor returns instead of retrying every 6 s
            return ret

    Bounded._catalyst_opening = True
    if kind == "trade":
        ctx = Bounded(filter_trdmarket=futu.TrdMarket.HK, host=host, port=port)
    else:
        ctx = Bounded(host=host, port=port)
    ctx._catalyst_opening = False
    if ctx.status != READY:
        ctx.close()
        raise TemporaryFailure(f"OpenD at {host}:{port} did not complete the handshake")
    ctx._auto_reconnect = True
    ctx.set_sync_query_connect_timeout(timeout)
    return ctx


class Link:
    """One SDK context, opened on first use and replaced when its connection failed (rather than waiting for
    the SDK's own reconnection). Blocking: used from worker threads."""

    def __init__(self, name: str, opener: Callable[[], Any]) -> None:
        self.name = name
        self._opener = opener
        self._lock = threading.Lock()
        self._ctx: Any = None
        self.opened = 0  # contexts opened so far

    def get(self) -> Any:
        with self._lock:
            ctx = self._ctx
            if ctx is not None and ctx.status != READY:
                log.warning("moomoo: the %s connection to OpenD dropped; opening a new one", self.name)
                _close(ctx)
                ctx = self._ctx = None
            if ctx is None:
                ctx = self._opener()
                self._ctx = ctx
                self.opened += 1
            return ctx

    def discard(self, ctx: Any) -> None:
        with self._lock:
            if self._ctx is ctx:
                self._ctx = None
        _close(ctx)

    def close(self) -> None:
        with self._lock:
            ctx, self._ctx = self._ctx, None
        if ctx is not None:
            _close(ctx)


def _close(ctx: Any) -> None:
    try:
        ctx.close()
    except (OSError, RuntimeError, ValueError) as exc:
        log.debug("moomoo: closing a context failed: %s", exc)


class SdkCalls:
    """Runs SDK calls in worker threads (at most `max_threads` at once) and translates their failures once.

    A call gets the link's context and answers the SDK's ``(ret, data)``; a failure of the connection itself
    replaces the context for the next call."""

    def __init__(self, tuning: Tuning, secrets: Sequence[str] = ()) -> None:
        self._tuning = tuning
        self._secrets = tuple(secrets)
        self._limiter = anyio.CapacityLimiter(tuning.max_threads)
        self.requests = 0  # SDK calls made (each may be several OpenD requests)

    async def read(self, what: str, link: Link, call: Callable[[Any], tuple[int, T]]) -> T:
        """An idempotent call: retried after a temporary failure, with an awaited backoff."""
        attempt = 0
        while True:
            try:
                return await self._once(what, link, call)
            except TemporaryFailure:
                if attempt >= self._tuning.read_retries:
                    raise
                attempt += 1
                await anyio.sleep(self._tuning.retry_backoff * attempt)

    async def once(self, what: str, link: Link, call: Callable[[Any], tuple[int, T]]) -> T:
        """Tried once: calls that change state at the broker."""
        return await self._once(what, link, call)

    async def _once(self, what: str, link: Link, call: Callable[[Any], tuple[int, T]]) -> T:
        def run() -> T:
            try:
                ctx = link.get()
                ret, data = call(ctx)
            except CatalystError:
                raise
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
                detail = wire.one_line(f"{type(exc).__name__}: {exc}", self._secrets)
                raise TemporaryFailure(f"futu-api failed on {what}: {detail}") from None
            if ret != 0:
                message = str(data)
                if wire.is_transport(message) and "Timeout" not in message:
                    link.discard(ctx)
                raise wire.translate(what, message, self._secrets)
            return data

        self.requests += 1
        try:
            return await anyio.to_thread.run_sync(run, limiter=self._limiter)
        except CatalystError as exc:
            log.warning("moomoo: %s failed: %s", what, exc)
            raise


class OrderFeed:
    """The order updates OpenD pushes (Trd_UpdateOrder), the latest per order id, and the coroutines waiting
    for one. The SDK delivers them on its callback thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, wire.Row] = {}
        self._waiters: list[tuple[str, Callable[[], None]]] = []
        self.received = 0

    def update(self, row: wire.Row) -> None:
        order_id = str(row.get("order_id", ""))
        with self._lock:
            self.received += 1
            known = self._rows.pop(order_id, None)
            self._rows[order_id] = row if known is None else wire.newer(known, row)
            while len(self._rows) > _KEPT_ROWS:
                del self._rows[next(iter(self._rows))]
            wake = [w for i, w in self._waiters if i == order_id]
        for w in wake:
            w()

    def latest(self, order_id: str) -> wire.Row | None:
        with self._lock:
            return self._rows.get(order_id)

    async def wait(self, order_id: str, done: Callable[[wire.Row], bool], seconds: float) -> wire.Row | None:
        """The first pushed state of `order_id` that is `done` (also one pushed before), or None after `seconds`."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        entry = (order_id, wake)
        with self._lock:
            self._waiters.append(entry)
        try:
            with anyio.move_on_after(seconds):
                while True:
                    row = self.latest(order_id)
                    if row is not None and done(row):
                        return row
                    await event.wait()
                    event.clear()
            return None
        finally:
            with self._lock:
                self._waiters.remove(entry)

    def handler(self, futu: ModuleType) -> Any:
        """An SDK handler of order pushes that feeds this."""
        feed = self

        class Handler(futu.TradeOrderHandlerBase):  # type: ignore[misc, name-defined]
            def on_recv_rsp(self, rsp_pb: Any) -> Any:
                ret, data = super().on_recv_rsp(rsp_pb)
                if ret == 0:
                    for row in data.to_dict("records"):
                        feed.update(row)
                return ret, data

        return Handler()
