"""How the adapter calls alpaca-py: endpoints and keys from the settings, a session with a timeout and no
hidden retries, and a runner that calls the synchronous SDK in worker threads under a bounded limiter,
retries idempotent reads with an awaited backoff, and translates every failure once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from requests.exceptions import RequestException

from catalyst_mcp.brokers import alpaca_mapping as wire
from catalyst_mcp.brokers.alpaca_config import (
    AlpacaTuning,
)
from catalyst_mcp.brokers.alpaca_transport import FastSession
from catalyst_mcp.domain.errors import CatalystError, OperatorNeeded, TemporaryFailure

T = TypeVar("T")
M = TypeVar("M")
log = logging.getLogger("catalyst_mcp.brokers.alpaca")


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
