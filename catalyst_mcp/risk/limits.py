"""The risk limits: one typed, versioned model with documented defaults per market (see docs/risk.md)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.symbols import listed_symbol

Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Pct = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)]


class RiskLimits(BaseModel):
    """Pre-trade limits. Money is in the market's currency; percentages are percent (2 means 2 %)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="default", max_length=64, description="a label recorded with the version")
    # order size and value
    max_order_shares: Decimal = Field(default=Decimal("10000"), gt=0, allow_inf_nan=False)
    min_order_value: Money = Decimal("100")
    max_position_value: Money = Decimal("25000")
    max_position_pct_of_equity: Pct = Decimal("20")
    max_open_positions: int = Field(default=10, ge=0)
    # losses
    max_daily_loss: Money = Decimal("2000")
    max_daily_loss_pct: Pct = Decimal("2")
    max_loss_per_trade_pct: Pct = Decimal("1")
    # stops and targets
    require_stop_loss: bool = True
    max_stop_pct: Pct = Decimal("10")
    min_reward_risk: Decimal = Field(default=Decimal("1.5"), ge=0, allow_inf_nan=False)
    # prices
    price_collar_pct: Pct = Decimal("5")
    max_quote_age_seconds: int = Field(default=60, ge=1)
    # timing and pace
    no_entry_minutes_before_close: int = Field(default=10, ge=0, le=600)
    duplicate_window_seconds: int = Field(default=60, ge=0)
    max_orders_per_minute: int = Field(default=10, ge=1)
    max_trades_per_day: int = Field(default=50, ge=1)
    # symbols and direction
    allow_short: bool = False
    restricted_symbols: frozenset[str] = frozenset()
    allowed_symbols: frozenset[str] | None = None
    # approvals
    approval_ttl_seconds: int = Field(default=60, ge=1, le=3600)
    # an order worth more than this is sent only once confirmed (MCP elicitation, or a one-time token); every
    # order is confirmed in live mode whatever this says; None: no threshold
    confirm_notional_above: Money | None = None

    @field_validator("restricted_symbols", "allowed_symbols", mode="before")
    @classmethod
    def _canonical_symbols(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return frozenset(listed_symbol(str(v)) for v in value)

    @cached_property
    def version(self) -> str:
        """``name-hash``: changes exactly when a limit's value changes (not how it was written), so every
        decision names the limits it used."""
        body = json.dumps({k: _canonical(v) for k, v in self.model_dump().items()}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(body.encode()).hexdigest()[:10]}"


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


# Per-market defaults where the currency or the lot changes the meaning of a number.
MARKET_DEFAULTS: dict[Market, dict[str, Any]] = {
    Market.US: {},
    Market.HK: {
        "max_order_shares": Decimal("100000"),
        "min_order_value": Decimal("1000"),
        "max_position_value": Decimal("200000"),
        "max_daily_loss": Decimal("15000"),
    },
}


def limits_for(market: Market, overrides: dict[str, Any] | None = None) -> RiskLimits:
    return RiskLimits(**{**MARKET_DEFAULTS[market], **(overrides or {})})
