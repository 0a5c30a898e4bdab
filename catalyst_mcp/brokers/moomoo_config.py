"""Moomoo's settings as the adapter uses them: where OpenD listens, paper or live (live asked for twice, and
unlocked with a trade password that comes from the environment only), and the tuning of its calls. Pure and
free of the SDK (importing futu-api costs most of a second, pandas included)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import BrokerMode, Market
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.profiles import MarketProfile

PASSWORD_ENV: Final = "CATALYST_MOOMOO__TRADE_PASSWORD"


@dataclass(frozen=True, slots=True)
class Tuning:
    """How long and how often to try (``CATALYST_MOOMOO__…``)."""

    timeout: float = 10.0  # per request, and to (re)connect
    read_retries: int = 1  # extra attempts of an idempotent read after a temporary failure
    retry_backoff: float = 0.25  # seconds before a read's retry (awaited)
    max_threads: int = 4  # concurrent SDK calls; more wait for a slot
    cancel_wait: float = 5.0  # seconds to await a cancelled order's final state
    fill_wait: float = 2.0  # seconds a market order's answer waits for its fill to be pushed


@dataclass(frozen=True, slots=True)
class MoomooConfig:
    mode: BrokerMode
    host: str
    port: int
    tuning: Tuning
    password: str = field(default="", repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def config_for(settings: Settings, profile: MarketProfile) -> MoomooConfig:
    """The adapter's configuration; refuses with one line what it cannot run with."""
    if profile.market is not Market.HK:
        raise OperatorNeeded("the Moomoo broker trades HK securities: set CATALYST_MARKET=HK")
    mode = settings.broker_mode
    if mode is BrokerMode.LIVE and not settings.allow_live:
        raise OperatorNeeded("live trading needs both CATALYST_BROKER_MODE=live and CATALYST_ALLOW_LIVE=yes")
    chosen = settings.moomoo
    password = chosen.trade_password.get_secret_value() if chosen.trade_password else ""
    if password and os.environ.get(PASSWORD_ENV) != password:
        raise OperatorNeeded(f"the Moomoo trade password is read from the environment only: set {PASSWORD_ENV}")
    if mode is BrokerMode.LIVE and not password:
        raise OperatorNeeded(f"live trading at Moomoo unlocks with the trade password: set {PASSWORD_ENV}")
    tuning = Tuning(
        timeout=chosen.timeout_seconds,
        read_retries=chosen.read_retries,
        retry_backoff=chosen.retry_backoff_seconds,
        max_threads=chosen.max_threads,
        cancel_wait=chosen.cancel_wait_seconds,
        fill_wait=chosen.fill_wait_seconds,
    )
    return MoomooConfig(mode, chosen.host, chosen.port, tuning, password)
