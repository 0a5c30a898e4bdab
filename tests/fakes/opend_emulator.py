"""A local emulator of Futu OpenD for the real futu-api SDK to talk to.

An asyncio TCP server on 127.0.0.1 (port 0) speaking OpenD's framed protocol (`opend_wire`) with futu-api's
own protobuf classes: InitConnect, KeepAlive, the global state, the account list, unlock, funds, positions,
today's and past orders, place, modify and cancel, order pushes to subscribed connections, snapshots (lot
size and price spread), static info and K lines (`opend_handlers`), over an emulated HK market and paper
and real accounts (`opend_market`, `opend_account`).

It runs in a thread of its own with its own event loop (`running_opend`), so that the blocking SDK can talk
to it from any thread of a test. Every request is counted per proto id (`counts`). Faults are injected per
proto id: ``refuse`` (retType -1: nothing happened), ``no-reply`` (the request is swallowed: nothing
happened, the SDK times out), ``drop-before`` (the connection is closed before the request is handled),
``drop-after`` (handled — an order stored — then the connection is closed unanswered), ``hold`` (held until
released, then answered); OpenD not listening at all is `stop_listening` or `unused_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from catalyst_mcp.ports import Clock
from tests.fakes.opend_account import EmuOrder, OpenDAccounts
from tests.fakes.opend_handlers import Handlers
from tests.fakes.opend_wire import HEAD, Frame, decode_head, encode, response

log = logging.getLogger(__name__)
HOLD_LIMIT: Final = 30.0  # seconds a held request waits for its release at most
MODES: Final = ("refuse", "no-reply", "drop-before", "drop-after", "hold")


@dataclass
class Fault:
    proto_id: int
    mode: str
    times: int = 1
    message: str = "the server is busy, please try again later"
    arrived: threading.Event = field(default_factory=threading.Event)
    handled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Conn:
    conn_id: int
    writer: asyncio.StreamWriter
    serial: int = 0

    def send(self, proto_id: int, serial: int, message: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(proto_id, serial, message))


class OpenDEmulator(OpenDAccounts):
    """OpenD with one paper and one real HK account; a test drives it through the methods below."""

    def __init__(self, clock: Clock, *, cash: str = "1000000", trade_password: str = "123456") -> None:
        super().__init__(clock, cash=cash, trade_password=trade_password)
        self.handlers = Handlers(self)
        self.faults: list[Fault] = []
        self.counts: Counter[int] = Counter()
        self.connections: dict[int, _Conn] = {}
        self.pushes: list[EmuOrder] = []  # every order update pushed, in order
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._next_conn = 70_000
        self.on_update = self._schedule_push

    # --- test hooks -----------------------------------------------------------------------------------

    def fault(self, proto_id: int, mode: str, *, times: int = 1, message: str | None = None) -> Fault:
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}: one of {', '.join(MODES)}")
        added = Fault(proto_id, mode, times, message or Fault.message)
        with self.lock:
            self.faults.append(added)
        return added

    def clear_faults(self) -> None:
        with self.lock:
            for f in self.faults:
                f.released.set()
            self.faults.clear()

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()

    def stop_listening(self) -> None:
        """Close the listening socket and every connection: OpenD has gone away."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)

    # --- server ---------------------------------------------------------------------------------------

    async def serve(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._connection, sock=sock)
        self.port = sock.getsockname()[1]
        started.set()
        async with self._server:
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serve_forever()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.writer.close()
        self.connections.clear()

    def _take_fault(self, proto_id: int) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.proto_id == proto_id and f.times > 0:
                    f.times -= 1
                    return f
        return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_conn += 1
        conn = _Conn(self._next_conn, writer)
        self.connections[conn.conn_id] = conn
        try:
            while True:
                head = await reader.readexactly(HEAD.size)
                proto_id, serial, length = decode_head(head)
                frame = Frame(proto_id, serial, await reader.readexactly(length))
                with self.lock:
                    self.counts[proto_id] += 1
                if not await self._handle(conn, frame):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self.connections.pop(conn.conn_id, None)
            writer.close()

    async def _handle(self, conn: _Conn, frame: Frame) -> bool:
        """Answer one request; False when the connection must close."""
        fault = self._take_fault(frame.proto_id)
        if fault is not None:
            fault.arrived.set()
            if fault.mode == "hold":
                await asyncio.to_thread(fault.released.wait, HOLD_LIMIT)
            elif fault.mode == "drop-before":
                fault.handled.set()
                return False
            elif fault.mode == "no-reply":
                fault.handled.set()
                return True
            elif fault.mode == "refuse":
                conn.send(frame.proto_id, frame.serial, response(frame.proto_id, ret_type=-1, message=fault.message))
                fault.handled.set()
                return True
        if frame.proto_id not in self.handlers.table:
            answer = response(frame.proto_id, ret_type=-1, message=f"proto {frame.proto_id} is not emulated")
        else:
            answer = self.handlers.answer(frame.proto_id, frame.request(), conn.conn_id)
        if fault is not None and fault.mode == "drop-after":
            fault.handled.set()
            return False
        conn.send(frame.proto_id, frame.serial, answer)
        if fault is not None:
            fault.handled.set()
        return True

    def _schedule_push(self, order: EmuOrder) -> None:
        snapshot = EmuOrder(**{k: getattr(order, k) for k in EmuOrder.__dataclass_fields__})
        with self.lock:
            self.pushes.append(snapshot)
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._push, snapshot)

    def _push(self, order: EmuOrder) -> None:
        message = self.handlers.order_push(order)
        for conn in list(self.connections.values()):
            conn.serial += 1
            conn.send(2208, conn.serial, message)


def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_opend(emulator: OpenDEmulator) -> Iterator[OpenDEmulator]:
    """Serve `emulator` from a thread with its own event loop; its port is set when this yields."""
    started = threading.Event()
    loop = asyncio.new_event_loop()
    task: asyncio.Task[None] | None = None

    def run() -> None:
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(emulator.serve(started))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        rest = asyncio.all_tasks(loop)
        for pending in rest:
            pending.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="opend-emulator", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the OpenD emulator did not start")
    try:
        yield emulator
    finally:
        emulator.clear_faults()

        def cancel() -> None:
            if task is not None:
                task.cancel()
            for conn in list(emulator.connections.values()):
                conn.writer.close()

        with contextlib.suppress(RuntimeError):  # its loop has ended already when it stopped listening
            loop.call_soon_threadsafe(cancel)
        thread.join(10)
