"""How the adapter calls alpaca-py: endpoints and keys from the settings, a session with a timeout and no
hidden retries, and a runner that calls the synchronous SDK in worker threads under a bounded limiter,
retries idempotent reads with an awaited backoff, and translates every failure once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import urlsplit

import anyio
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from requests.exceptions import RequestException

from catalyst_mcp.brokers import alpaca_mapping as wire
from catalyst_mcp.brokers.alpaca_transport import FastSession
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode
from catalyst_mcp.domain.errors import CatalystError, OperatorNeeded, TemporaryFailure

T = TypeVar("T")
M = TypeVar("M")
log = logging.getLogger("catalyst_mcp.brokers.alpaca")

PAPER_URL: Final = "https://paper-api.alpaca.markets"
LIVE_URL: Final = "https://api.alpaca.markets"
DATA_URL: Final = "https://data.alpaca.markets"


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


def credentials(settings: Settings) -> tuple[str, str]:
    key = settings.alpaca_key_id.get_secret_value() if settings.alpaca_key_id else ""
    secret = settings.alpaca_secret_key.get_secret_value() if settings.alpaca_secret_key else ""
    if not key or not secret:
        raise OperatorNeeded("the Alpaca broker needs APCA_API_KEY_ID and APCA_API_SECRET_KEY")
    return key, secret


def harden(client: RESTClient, tuning: AlpacaTuning) -> None:
    """Give an SDK client a session with a timeout and turn its hidden retries (blocking sleeps) off."""
    if not all(hasattr(client, a) for a in ("_session", "_retry", "_retry_wait", "_retry_codes")):
        raise OperatorNeeded("this alpaca-py version hides its session or retry settings: its calls cannot be bounded")
    client._session.close()
    client._session = FastSession(tuning.timeout, tuning.max_threads, str(getattr(client, "_base_url", "")))
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


def expect(value: object, kind: type[M]) -> M:
    """`value` when it is a `kind`; anything else is an answer this adapter cannot use."""
    if not isinstance(value, kind):
        raise TemporaryFailure(f"Alpaca sent an unexpected answer ({type(value).__name__})")
    return value


def none_if_missing(call: Callable[[], T]) -> Callable[[], T | None]:
    """`call`, answering None where Alpaca answers 404."""

    def run() -> T | None:
        try:
            return call()
        except APIError as exc:
            if wire.status_of(exc) == 404:
                return None
            raise

    return run
