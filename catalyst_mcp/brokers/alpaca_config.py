"""Alpaca's endpoints, keys and tuning from the settings: pure, and free of the SDK (importing alpaca-py costs
most of a second, pandas included), so that a server checks its configuration and starts without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode
from catalyst_mcp.domain.errors import OperatorNeeded

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
    data = _origin(settings.alpaca_data_url or DATA_URL)
    host = _host(trading, "CATALYST_ALPACA_URL")
    _host(data, "CATALYST_ALPACA_DATA_URL")
    if mode is BrokerMode.PAPER and host == _host(LIVE_URL, "LIVE_URL"):
        raise OperatorNeeded("paper mode, but CATALYST_ALPACA_URL points at Alpaca's live endpoint")
    if mode is BrokerMode.LIVE and host == _host(PAPER_URL, "PAPER_URL"):
        raise OperatorNeeded("live mode, but CATALYST_ALPACA_URL points at Alpaca's paper endpoint")
    return AlpacaEndpoints(mode, trading, data)


def _host(url: str, setting: str) -> str:
    """The URL's host as DNS compares it: lower case, without the root's trailing dot (``api.alpaca.markets.``
    is ``api.alpaca.markets``). Refuses a URL that is not http(s) with a host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        raise OperatorNeeded(f"{setting} must be an http(s) URL with a host, such as {PAPER_URL}")
    return host


def credentials(settings: Settings) -> tuple[str, str]:
    key = settings.alpaca_key_id.get_secret_value() if settings.alpaca_key_id else ""
    secret = settings.alpaca_secret_key.get_secret_value() if settings.alpaca_secret_key else ""
    if not key or not secret:
        raise OperatorNeeded("the Alpaca broker needs APCA_API_KEY_ID and APCA_API_SECRET_KEY")
    return key, secret
