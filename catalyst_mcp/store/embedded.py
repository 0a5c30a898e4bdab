"""Embedded PostgreSQL (pgserver) under the data dir: start or reuse it, recover an orphan, stop it.

The server outlives the process that started it, so several catalyst-mcp processes can share it. Callers are
synchronous; call them from async code via ``anyio.to_thread.run_sync``. Unix only (``fcntl``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import pathlib
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import psutil  # type: ignore[import-untyped]

from catalyst_mcp.domain.errors import OperatorNeeded

_log = logging.getLogger(__name__)

_ROOT_DATA_DIR = pathlib.Path("/var/lib/catalyst-mcp")
_LOCK_TIMEOUT = 60.0
# A live postmaster answers a startup packet within milliseconds; silence this long means it is wedged.
_PROBE_TIMEOUT = 3.0
_BUSY_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_CANNOT_CONNECT_NOW = "57P03"
_STOPPED = "stopped-by-operator"  # in the data dir: `catalyst-mcp db stop` ran; servers do not restart it

# pgserver guards start-up with a class-level fasteners lock, which is not thread-safe within one process.
_in_process = threading.Lock()


def default_data_dir() -> pathlib.Path:
    """The data dir used when ``CATALYST_DATA_DIR`` is unset."""
    if os.geteuid() == 0:
        # pgserver opens every parent of its data dir to other users, so root's must not sit under a home dir.
        return _ROOT_DATA_DIR
    try:
        import platformdirs
    except ImportError:
        base = os.environ.get("XDG_DATA_HOME") or str(pathlib.Path.home() / ".local" / "share")
        return pathlib.Path(base) / "catalyst-mcp"
    return pathlib.Path(platformdirs.user_data_dir("catalyst-mcp"))


def ensure_embedded_postgres(data_dir: pathlib.Path) -> str:
    """Start the embedded server in ``data_dir/pg`` (or reuse a live one); return its Unix-socket URI.

    A stale ``postmaster.pid`` or a postmaster that does not answer is cleared and the server restarted.
    Raises ``OperatorNeeded`` when that is impossible.
    """
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pg"
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pgdata.mkdir(mode=0o700, exist_ok=True)
        (data_dir / _STOPPED).unlink(missing_ok=True)  # an explicit start ends an operator's stop
        with _in_process, _start_lock(data_dir):
            found = _read_postmaster(pgdata)
            if found is not None and _cluster_process(found.pid, pgdata) is not None:
                answer = _wait_for_answer(found)
                if answer is _Answer.READY:
                    return found.uri
                if answer is _Answer.BUSY:
                    raise OperatorNeeded(
                        f"embedded PostgreSQL in {data_dir} is still starting or stopping after "
                        f"{_BUSY_TIMEOUT:.0f} s (log: {pgdata / 'log'})"
                    )
                _log.warning("embedded PostgreSQL (pid %d) in %s does not answer; restarting it", found.pid, data_dir)
            _clear_leftovers(pgdata, found)
            first = not (pgdata / "PG_VERSION").exists()
            if first:
                _log.info("initialising the embedded PostgreSQL in %s (first start only, a few seconds)", pgdata)
            began = time.monotonic()
            _start(pgdata)
            if first:
                _log.info("embedded PostgreSQL initialised and started in %.1f s", time.monotonic() - began)
            started = _read_postmaster(pgdata)
            if started is None or _wait_for_answer(started) is not _Answer.READY:
                raise OperatorNeeded(
                    f"embedded PostgreSQL in {data_dir} started but does not answer (log: {pgdata / 'log'})"
                )
            return started.uri
    except OperatorNeeded:
        raise
    except subprocess.CalledProcessError as exc:
        program = pathlib.Path(str(exc.cmd[0])).name
        raise OperatorNeeded(
            f"embedded PostgreSQL in {data_dir} failed to start: {program} exited with status "
            f"{exc.returncode} (log: {pgdata / 'log'})"
        ) from exc
    # pgserver reports broken invariants with assert and RuntimeError.
    except (OSError, subprocess.SubprocessError, psutil.Error, AssertionError, RuntimeError) as exc:
        raise OperatorNeeded(f"embedded PostgreSQL in {data_dir} failed to start: {_one_line(exc)}") from exc


def stop_embedded_postgres(data_dir: pathlib.Path, *, by_operator: bool = False) -> None:
    """Stop the embedded server of ``data_dir`` if it runs (fast shutdown, then kill). ``by_operator``
    (``catalyst-mcp db stop``): running servers leave it stopped until a command starts it again."""
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pg"
    if not pgdata.is_dir():
        return
    if by_operator:
        (data_dir / _STOPPED).touch()
    try:
        with _in_process, _start_lock(data_dir):
            found = _read_postmaster(pgdata)
            postmaster = _cluster_process(found.pid, pgdata) if found is not None else None
            if postmaster is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    postmaster.send_signal(signal.SIGINT)  # what `pg_ctl stop -m fast` sends
                if not _wait_gone([postmaster], _STOP_TIMEOUT):
                    _log.warning("embedded PostgreSQL in %s ignored a fast shutdown; killing it", data_dir)
            _clear_leftovers(pgdata, found)
    except OperatorNeeded:
        raise
    except (OSError, psutil.Error) as exc:
        raise OperatorNeeded(f"embedded PostgreSQL in {data_dir} could not be stopped: {_one_line(exc)}") from exc


def needs_restart(data_dir: pathlib.Path) -> bool:
    """Whether the embedded server of ``data_dir`` died under its users: created, not running, and not stopped
    by an operator. Cheap (a file and a process lookup): a running server polls it."""
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pg"
    if not (pgdata / "PG_VERSION").exists() or (data_dir / _STOPPED).exists():
        return False
    found = _read_postmaster(pgdata)
    return found is None or _cluster_process(found.pid, pgdata) is None


@dataclass(frozen=True, slots=True)
class EmbeddedStatus:
    """What ``catalyst-mcp db status`` shows of a data dir's embedded server."""

    data_dir: pathlib.Path
    initialised: bool  # the cluster exists (its first start has run)
    running: bool
    pid: int | None
    uri: str | None
    version: str | None  # the cluster's major version (PG_VERSION)
    size_bytes: int  # the cluster's files on disk
    stopped_by_operator: bool = False  # `catalyst-mcp db stop` stopped it: running servers leave it stopped


def embedded_status(data_dir: pathlib.Path) -> EmbeddedStatus:
    """The embedded server of ``data_dir``, read without starting or touching it."""
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pg"
    try:
        version: str | None = (pgdata / "PG_VERSION").read_text().strip()
    except OSError:
        version = None
    found = _read_postmaster(pgdata)
    running = found is not None and _cluster_process(found.pid, pgdata) is not None
    size = 0
    if pgdata.is_dir():
        for path in pgdata.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    size += path.stat().st_size
    return EmbeddedStatus(
        data_dir=data_dir,
        initialised=version is not None,
        running=running,
        pid=found.pid if running and found is not None else None,
        uri=found.uri if running and found is not None else None,
        version=version,
        size_bytes=size,
        stopped_by_operator=(data_dir / _STOPPED).exists(),
    )


@dataclass(frozen=True)
class _Postmaster:
    """What ``postmaster.pid`` says about a server."""

    pid: int
    socket_dir: pathlib.Path
    port: int

    @property
    def uri(self) -> str:
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={self.port}"


class _Answer(Enum):
    READY = "ready"
    BUSY = "busy"
    SILENT = "silent"


def _read_postmaster(pgdata: pathlib.Path) -> _Postmaster | None:
    """Parse ``postmaster.pid``; None if it is absent or unreadable as a Unix-socket server's."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    try:
        pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4].strip()
    except (IndexError, ValueError):
        return None
    if not socket_dir:
        return None
    return _Postmaster(pid=pid, socket_dir=pathlib.Path(socket_dir), port=port)


def _cluster_process(pid: int, pgdata: pathlib.Path) -> psutil.Process | None:
    """The live process ``pid`` if it belongs to this cluster, else None (dead, zombie or a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return proc if _belongs_to(proc, pgdata) else None
    except psutil.Error:
        return None


def _belongs_to(proc: psutil.Process, pgdata: pathlib.Path) -> bool:
    # The postmaster chdirs into its data dir and every backend inherits that, which identifies the cluster
    # even after the postmaster died and its children were re-parented.
    return bool(
        proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE and pathlib.Path(proc.cwd()) == pgdata
    )


def _cluster_processes(pgdata: pathlib.Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if _belongs_to(proc, pgdata):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_gone(procs: list[psutil.Process], timeout: float) -> bool:
    """Poll until every process has exited; a zombie counts as gone (its parent may never reap it)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_INTERVAL)


def _clear_leftovers(pgdata: pathlib.Path, found: _Postmaster | None) -> None:
    """Kill what is left of a dead or wedged server and remove the lock files that would stop a new one."""
    procs = _cluster_processes(pgdata)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    if not _wait_gone(procs, _STOP_TIMEOUT):
        pids = ", ".join(str(proc.pid) for proc in procs)
        raise OperatorNeeded(f"embedded PostgreSQL in {pgdata.parent} left processes that will not die: {pids}")
    # postgres itself replaces a lock file whose pid is dead, but not one whose pid is a zombie or was reused.
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    socket_dirs = {pgdata} if found is None else {pgdata, found.socket_dir}
    for directory in socket_dirs:
        for leftover in directory.glob(".s.PGSQL.*"):
            leftover.unlink(missing_ok=True)


def _start(pgdata: pathlib.Path) -> None:
    """Initialise (first time) and start the server with pgserver, keeping none of its per-process state."""
    with warnings.catch_warnings():
        # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset; only a lock file goes there.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import PostgresServer, get_server

    # get_server() would return a cached handle even though that server has since died.
    PostgresServer._instances.pop(pgdata, None)
    server = get_server(pgdata, cleanup_mode=None)
    # With cleanup_mode=None pgserver's handle bookkeeping (cache, pid list, atexit hook) does nothing useful.
    atexit.unregister(server._cleanup)
    server.global_process_id_list.get_and_remove(os.getpid())
    PostgresServer._instances.pop(pgdata, None)


def _wait_for_answer(postmaster: _Postmaster) -> _Answer:
    """Probe until the server is ready, silent, or still busy after the busy timeout."""
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        answer = _probe(postmaster)
        if answer is not _Answer.BUSY or time.monotonic() > deadline:
            return answer
        time.sleep(_POLL_INTERVAL)


def _probe(postmaster: _Postmaster) -> _Answer:
    """Open a session over the socket with just enough of the wire protocol to see the server serve it."""
    body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0\0"
    path = str(postmaster.socket_dir / f".s.PGSQL.{postmaster.port}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_PROBE_TIMEOUT)
            sock.connect(path)
            sock.sendall(struct.pack("!i", len(body) + 4) + body)
            while True:
                kind, payload = _read_message(sock)
                if kind == b"E":
                    busy = _sqlstate(payload) == _CANNOT_CONNECT_NOW
                    return _Answer.BUSY if busy else _Answer.READY
                if kind == b"Z":
                    sock.sendall(b"X" + struct.pack("!i", 4))
                    return _Answer.READY
                if kind == b"R" and payload[:4] != b"\0\0\0\0":
                    return _Answer.READY  # it wants a password: alive, just not configured by us
    except OSError:
        return _Answer.SILENT


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _recv_exact(sock, 5)
    (length,) = struct.unpack("!i", header[1:])
    return header[:1], _recv_exact(sock, length - 4)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        data += chunk
    return data


def _sqlstate(error_payload: bytes) -> str:
    for field in error_payload.split(b"\0"):
        if field.startswith(b"C"):
            return field[1:].decode("ascii", "replace")
    return ""


@contextlib.contextmanager
def _start_lock(data_dir: pathlib.Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``data_dir/.start.lock``, polled up to a bound; closing the fd releases it."""
    path = data_dir / ".start.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OperatorNeeded(f"another process has held {path} for over {_LOCK_TIMEOUT:.0f} s") from None
                time.sleep(_POLL_INTERVAL)
        yield
    finally:
        os.close(fd)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
