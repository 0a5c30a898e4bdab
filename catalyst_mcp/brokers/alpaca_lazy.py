"""Alpaca as a server opens it: the configuration and the account checked at start-up without the SDK, and the
SDK (alpaca-py, with pandas: most of a second to import) loaded in a worker thread by the first call that needs
it. A server so answers the MCP handshake without paying for a library the handshake does not use.

The start-up check is one ``GET /v2/account`` through the same session the SDK sends with: wrong keys, a
forbidden endpoint or a blocked account stop start-up with one line; an endpoint that does not answer only
warns (the first call will say more).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import requests

from catalyst_mcp.brokers.alpaca_config import AlpacaEndpoints, AlpacaTuning, credentials, endpoints_for
from catalyst_mcp.brokers.alpaca_transport import FastSession
from catalyst_mcp.brokers.lazy import LazyAdapter, LazyBroker, LazyMarketData
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock, MarketData

if TYPE_CHECKING:
    from catalyst_mcp.brokers.alpaca import Opened

log = logging.getLogger("catalyst_mcp.brokers.alpaca")
_MAX_MESSAGE = 200


def _one_line(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def check_account(where: AlpacaEndpoints, key: str, secret: str, tuning: AlpacaTuning) -> None:
    """Stop start-up on keys Alpaca refuses, an endpoint that forbids the account, or a blocked account; only
    warn when the endpoint does not answer. Blocking: run it in a worker thread."""
    session = FastSession(min(tuning.timeout, 10.0), 1, where.trading_url)
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}
    try:
        response = session.request("GET", f"{where.trading_url}/v2/account", headers=headers)
    except requests.RequestException as exc:
        log.warning("alpaca: could not check the account at start-up: %s", type(exc).__name__)
        return
    finally:
        session.close()
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message = _one_line(str(body.get("message", "")) if isinstance(body, dict) else response.text, (key, secret))
    if status == 401:
        raise OperatorNeeded(
            "Alpaca refused the API keys (401): check APCA_API_KEY_ID and APCA_API_SECRET_KEY "
            "and that they belong to the paper or live endpoint in use"
        )
    if status == 403:
        raise OperatorNeeded(f"Alpaca forbids this request (403): {message}")
    if 400 <= status < 500 and status != 429:
        raise OperatorNeeded(f"the Alpaca endpoint did not serve the account ({status}): {message}")
    if status != 200 or not isinstance(body, dict):
        log.warning("alpaca: could not check the account at start-up (%s)", status)
        return
    if body.get("trading_blocked") or body.get("account_blocked"):
        raise OperatorNeeded("the Alpaca account is blocked from trading")


def _build(settings: Settings, profile: MarketProfile, clock: Clock) -> Opened:
    from catalyst_mcp.brokers.alpaca import build_alpaca  # the SDK is imported here, off the event loop

    return build_alpaca(settings, profile, clock)


def _single_share(symbol: str) -> Decimal:
    return Decimal(1)  # US equities trade in single shares


@asynccontextmanager
async def open_alpaca_lazily(
    settings: Settings, profile: MarketProfile, clock: Clock
) -> AsyncIterator[tuple[Broker, MarketData]]:
    """The Alpaca broker and market data for a server: checked now, the SDK loaded on first use."""
    if profile.market is not Market.US:
        raise OperatorNeeded("Alpaca trades US equities only: set CATALYST_MARKET=US")
    where = endpoints_for(settings)
    key, secret = credentials(settings)
    await anyio.to_thread.run_sync(check_account, where, key, secret, AlpacaTuning.from_settings(settings))
    log.info("alpaca: %s trading at %s, data at %s (%s feed)", where.mode.value, where.trading_url, where.data_url,
             settings.alpaca_feed)  # fmt: skip
    lazy = LazyAdapter(functools.partial(_build, settings, profile, clock))
    try:
        yield (
            LazyBroker("alpaca", where.mode, lazy),
            LazyMarketData(f"alpaca-{settings.alpaca_feed}", lazy, _single_share),
        )
    finally:
        if lazy.opened is not None:
            lazy.opened.close()
