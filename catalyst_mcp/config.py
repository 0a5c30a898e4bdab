"""One typed Settings object, read once at start-up.

Precedence: command-line option > environment (``CATALYST_…``, nested with ``__``) > config file > defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from catalyst_mcp.domain.enums import BrokerKind, BrokerMode, Market
from catalyst_mcp.domain.errors import InvalidInput, OperatorNeeded
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.markets.symbols import canonical_symbol, normalise_symbol
from catalyst_mcp.risk.limits import RiskLimits, limits_for
from catalyst_mcp.signals.scanner import ScanCriteria, ScanTier, check_tiers, default_criteria

# The TOML file this load reads, if any: set by load_settings (``--config`` or CATALYST_CONFIG).
_config_file: ContextVar[Path | None] = ContextVar("catalyst_config_file", default=None)

Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class SyncSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    outage_share: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    outage_min_positions: int = Field(default=3, ge=1)
    price_tolerance: Decimal = Field(default=Decimal("0.0001"), ge=0, lt=1, description="relative avg-price drift")
    unsent_after_seconds: int = Field(
        default=60,
        ge=1,
        description="an order of ours still pending and unknown to the broker this long after it was recorded"
        " never reached it (its sender crashed or gave up): the sync ends it as rejected",
    )


ScanPct = Annotated[Decimal, Field(allow_inf_nan=False, ge=-100, le=1000)]


class ScanTierSettings(BaseModel):
    """One tier of the scanner: a symbol qualifies when it meets every threshold set (percent; inclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    min_change_pct: ScanPct | None = None
    min_relative_volume: Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)] | None = None
    min_gap_pct: ScanPct | None = None

    def tier(self) -> ScanTier:
        return ScanTier(self.name, self.min_change_pct, self.min_relative_volume, self.min_gap_pct)


class ScannerSettings(BaseModel):
    """The market scanner (scan_market). What is left unset takes the market's default (``signals/scanner.py``);
    percentages are percent, prices and turnover in the market's currency, volumes in shares a day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    universe: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="the symbols scanned, comma-separated; unset: the market data's own list (the simulated"
        " exchange's instruments, Alpaca's watchlist of large caps)",
    )
    min_price: Money | None = None
    max_price: Money | None = None
    min_avg_volume: Money | None = None
    min_avg_turnover: Money | None = Field(default=None, description="average daily volume × last price")
    max_spread_pct: Annotated[Decimal, Field(gt=0, le=100, allow_inf_nan=False)] | None = None
    tiers: tuple[ScanTierSettings, ...] | None = Field(
        default=None,
        min_length=1,
        description="strictest first, each looser than the one before; replaces the market's tiers",
    )
    gap_weight: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    volume_weight: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    volume_cap: Annotated[Decimal, Field(ge=1, le=1000, allow_inf_nan=False)] | None = None

    @field_validator("universe", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("universe")
    @classmethod
    def _symbols(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for raw in value or ():
            if canonical_symbol(Market.US, raw) is None and canonical_symbol(Market.HK, raw) is None:
                raise ValueError(f"{raw[:20]!r} is not a symbol (a US ticker such as AAPL or an HK code such as 700)")
        return value

    @field_validator("tiers")
    @classmethod
    def _tiers_loosen(cls, value: tuple[ScanTierSettings, ...] | None) -> tuple[ScanTierSettings, ...] | None:
        if value is not None:
            check_tiers([t.tier() for t in value])
        return value

    @model_validator(mode="after")
    def _price_range(self) -> ScannerSettings:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")
        return self

    def criteria(self, market: Market) -> ScanCriteria:
        """The market's default criteria with these settings over them."""
        base = default_criteria(market)
        filters = {
            name: value
            for name in ("min_price", "max_price", "min_avg_volume", "min_avg_turnover", "max_spread_pct")
            if (value := getattr(self, name)) is not None
        }
        weights = {
            name: value
            for name, value in (
                ("gap", self.gap_weight),
                ("volume", self.volume_weight),
                ("volume_cap", self.volume_cap),
            )
            if value is not None
        }
        tiers = base.tiers if self.tiers is None else tuple(t.tier() for t in self.tiers)
        return ScanCriteria(replace(base.filters, **filters), tiers, replace(base.weights, **weights))

    def symbols(self, market: Market) -> tuple[str, ...] | None:
        """The universe in ``market``'s canonical symbols (None: the market data's own list)."""
        if self.universe is None:
            return None
        try:
            return tuple(dict.fromkeys(normalise_symbol(market, raw) for raw in self.universe))
        except InvalidInput as exc:
            raise OperatorNeeded(f"invalid setting CATALYST_SCANNER__UNIVERSE: {exc}") from None


Pct = Annotated[Decimal, Field(gt=0, lt=100, allow_inf_nan=False)]


class MonitorSettings(BaseModel):
    """The position monitor (``catalyst-mcp monitor``). The exit thresholds left unset take the market's
    defaults (``signals/exits.py``); percentages are percent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_seconds: int = Field(default=60, ge=1, le=3600, description="between two passes in a session")
    exit_strength: Literal["weak", "moderate", "strong", "critical"] = Field(
        default="strong", description="the weakest exit signal that closes a position"
    )
    stop_loss_pct: Pct | None = None
    take_profit_pct: Pct | None = None
    trailing_stop_pct: Pct | None = Field(default=None, description="percent below the high-water mark")
    time_stop_minutes: int | None = Field(default=None, ge=0)
    end_of_session_minutes: int | None = Field(default=None, ge=0, le=240)
    lease_seconds: int = Field(default=300, ge=5, le=3600, description="a silent monitor's lease ends after")
    max_backoff_seconds: int = Field(default=300, ge=1, le=3600, description="the longest wait after failures")
    agent_id: str = Field(default="catalyst_monitor", pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class MoomooSettings(BaseModel):
    """Moomoo (Futu OpenD) for ``CATALYST_BROKER=moomoo``: where OpenD listens, the trade password that unlocks
    live trading (from the environment only; paper needs none), and how long and how often the adapter tries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=11111, ge=1, le=65535)
    trade_password: SecretStr | None = None
    timeout_seconds: float = Field(default=10, gt=0, le=120, description="per request, and to connect")
    read_retries: int = Field(default=1, ge=0, le=5)
    retry_backoff_seconds: float = Field(default=0.25, ge=0, le=10)
    max_threads: int = Field(default=4, ge=1, le=32, description="SDK calls at once")
    cancel_wait_seconds: float = Field(default=5, gt=0, le=60)
    fill_wait_seconds: float = Field(default=2, ge=0, le=30, description="a market order's answer awaits its fill")


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens (cache writes at the 5-minute TTL)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Money
    output: Money
    cache_write: Money
    cache_read: Money


# Anthropic's list prices of the models the agent knows by default; any other model needs its price in
# CATALYST_AGENT__PRICES (a JSON object: model -> {input, output, cache_write, cache_read}).
DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    name: ModelPrice(input=Decimal(i), output=Decimal(o), cache_write=Decimal(w), cache_read=Decimal(r))
    for name, (i, o, w, r) in {
        "claude-opus-4-6": ("5", "25", "6.25", "0.50"),
        "claude-opus-4-5": ("5", "25", "6.25", "0.50"),
        "claude-sonnet-4-6": ("3", "15", "3.75", "0.30"),
        "claude-sonnet-4-5": ("3", "15", "3.75", "0.30"),
        "claude-haiku-4-5": ("1", "5", "1.25", "0.10"),
    }.items()
}


class AgentSettings(BaseModel):
    """The agent's Claude policy (``catalyst-mcp agent --policy claude``): the model, its budgets and the
    retries of a model call. Money is in US dollars."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(default="claude-sonnet-4-6", min_length=1, max_length=128)
    max_turns: int = Field(default=20, ge=1, le=500, description="model calls in one cycle")
    max_output_tokens: int = Field(default=4096, ge=1, le=64000, description="per model call")
    daily_budget_usd: Money = Field(default=Decimal("5"), description="all agents of this database, per UTC day")
    prices: dict[str, ModelPrice] = Field(default_factory=dict, description="added to and over the defaults")
    retries: int = Field(default=4, ge=0, le=20, description="of a model call after 429, 5xx, 529 or no answer")
    retry_backoff_seconds: float = Field(default=1, ge=0, le=60, description="the first wait; doubles each time")
    retry_max_seconds: float = Field(default=30, ge=0, le=600, description="the longest wait")
    call_timeout_seconds: float = Field(default=120, gt=0, le=600, description="of one model call")
    # --schedule: the cycles of a trading day
    trade_every_minutes: int = Field(default=15, ge=1, le=390, description="between trade cycles in a session")
    scan_before_open_minutes: int = Field(default=15, ge=0, le=720, description="the scan cycle before the open")
    close_before_close_minutes: int = Field(default=15, ge=1, le=390, description="the close cycle before the close")
    heartbeat_every_minutes: int = Field(default=5, ge=1, le=60, description="between cycles in the trading day")

    def price(self) -> ModelPrice:
        """The configured model's price: its own entry, else the longest known name it extends (a dated
        snapshot such as ``claude-haiku-4-5-20251001``). Raises OperatorNeeded when there is none."""
        known = {**DEFAULT_MODEL_PRICES, **self.prices}
        if self.model in known:
            return known[self.model]
        prefixes = [name for name in known if self.model.startswith(f"{name}-")]
        if not prefixes:
            raise OperatorNeeded(
                f"no price for model {self.model}: set CATALYST_AGENT__PRICES to"
                f' {{"{self.model}": {{"input": …, "output": …, "cache_write": …, "cache_read": …}}}}'
                " (US dollars per million tokens)"
            )
        return known[max(prefixes, key=len)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CATALYST_", env_nested_delimiter="__", extra="ignore", frozen=True, populate_by_name=True
    )

    database_url: SecretStr | None = None
    data_dir: Path | None = None
    market: Market = Market.US
    broker: BrokerKind = BrokerKind.SIM
    broker_mode: BrokerMode = BrokerMode.PAPER
    allow_live: bool = False
    agent_id: str = Field(default="catalyst_agent", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    sim_seed: int = 7
    # "session": simulated time runs inside real sessions (trades at any hour); "wall": real time, real hours.
    sim_clock: Literal["session", "wall"] = "session"
    sim_starting_cash: Money = Decimal("100000")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Alpaca: keys under Alpaca's own names; the URLs point the adapter at another endpoint (an emulator).
    alpaca_key_id: SecretStr | None = Field(default=None, validation_alias="APCA_API_KEY_ID")
    alpaca_secret_key: SecretStr | None = Field(default=None, validation_alias="APCA_API_SECRET_KEY")
    alpaca_url: str | None = None
    alpaca_data_url: str | None = None
    alpaca_feed: Literal["iex", "sip"] = "iex"
    alpaca_timeout_seconds: float = Field(default=10, gt=0, le=120)
    alpaca_read_retries: int = Field(default=1, ge=0, le=5)
    alpaca_retry_backoff_seconds: float = Field(default=0.25, ge=0, le=10)
    alpaca_max_threads: int = Field(default=8, ge=1, le=64)
    alpaca_cancel_wait_seconds: float = Field(default=5, gt=0, le=60)
    abandon_after_seconds: int = Field(default=900, ge=10)
    # The order path: how long a caller may wait for its market's execution lane, how long the broker's account
    # (while it is still true of the book: store/views.py) and a quote may be reused by check_risk and
    # execute_trade instead of asking the broker again (0: always ask), and whether a halt cancels working
    # entry orders.
    lane_wait_seconds: float = Field(default=30, gt=0, le=600)
    account_reuse_seconds: float = Field(default=2, ge=0, le=60)
    quote_reuse_seconds: float = Field(default=1, ge=0, le=60)
    halt_cancels_entries: bool = True
    # Supervision: the role of a client the transport cannot identify (stdio: trader unless set; HTTP without
    # tokens: observer unless set), where the HTTP bearer tokens live (default: tokens.toml in the data dir),
    # the token the agent sends to a server given by URL, and how long audit rows are kept.
    role: Role | None = None
    tokens_file: Path | None = None
    token: SecretStr | None = None
    audit_retention_days: int = Field(default=365, ge=1, le=36500)
    # Streamable HTTP sessions of clients that vanish without ending them (a legacy-protocol client that is
    # cancelled sends no DELETE): each holds ~25 KB until it has been idle this long (an open GET stream for
    # notifications is not idle), and at most this many are kept (a new one is then refused with 503).
    http_session_idle_seconds: int = Field(default=600, ge=1, le=86400)
    http_max_sessions: int = Field(default=4000, ge=1, le=100000)
    risk: RiskLimits = Field(default_factory=lambda: limits_for(Market.US))
    sync: SyncSettings = SyncSettings()
    agent: AgentSettings = AgentSettings()
    scanner: ScannerSettings = ScannerSettings()
    monitor: MonitorSettings = MonitorSettings()
    moomoo: MoomooSettings = MoomooSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        if path is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path))

    @model_validator(mode="before")
    @classmethod
    def _market_defaults(cls, data: Any) -> Any:
        """Accept the market in any case, and start the risk limits from that market's defaults."""
        if not isinstance(data, dict):
            return data
        if isinstance(data.get("market"), str):
            data = {**data, "market": data["market"].upper()}
        risk = data.get("risk")
        if risk is None or isinstance(risk, dict):
            try:
                market = Market(data.get("market", Market.US))
            except ValueError:
                return data  # the market field reports the error
            data = {**data, "risk": {**limits_for(market).model_dump(), **(risk or {})}}
        return data

    @model_validator(mode="after")
    def _live_needs_double_opt_in(self) -> Settings:
        if self.broker_mode is BrokerMode.LIVE and not self.allow_live:
            raise ValueError("live trading needs both CATALYST_BROKER_MODE=live and CATALYST_ALLOW_LIVE=yes")
        return self


def _describe(error: Any) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return message
    return f"invalid setting CATALYST_{'__'.join(loc).upper()}: {message}"


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: explicit overrides (command-line options) > environment > TOML config file
    (``config``, else CATALYST_CONFIG) > defaults.

    Raises OperatorNeeded with one line naming the offending setting.
    """
    path = config or (Path(os.environ["CATALYST_CONFIG"]) if os.environ.get("CATALYST_CONFIG") else None)
    if path is not None:
        if not path.is_file():
            raise OperatorNeeded(f"config file {path} not found")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise OperatorNeeded(f"config file {path} is not valid TOML: {exc}") from None
    token = _config_file.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise OperatorNeeded(_describe(exc.errors()[0])) from None
    except SettingsError as exc:
        field = re.search(r'field "([a-z_]+)"', str(exc))
        name = f"CATALYST_{field.group(1).upper()}" if field else "a CATALYST_ variable"
        raise OperatorNeeded(f"invalid setting {name}: cannot parse its value") from None
    finally:
        _config_file.reset(token)
