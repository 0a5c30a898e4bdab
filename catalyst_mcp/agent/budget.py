"""The Claude policy's budgets: model turns per cycle, output tokens per call, and US dollars per UTC day from
the usage each response reports times the model's price. Arithmetic only; the spend book is a port."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens one response reports. ``input_tokens`` excludes the cached ones, as the API counts them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )


def cost(usage: Usage, price: Price) -> Decimal:
    """What a response cost in US dollars, exactly (no rounding: sums of many small calls stay right)."""
    tokens = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_read_tokens * price.cache_read
    )
    return tokens / MILLION


def usd(amount: Decimal) -> str:
    """``0.42 USD``: cents, rounded up so that a spend is never shown smaller than it was."""
    return f"{amount.quantize(CENT, rounding=ROUND_CEILING):f} USD"


@dataclass(frozen=True, slots=True)
class Budgets:
    max_turns: int
    max_output_tokens: int
    daily_usd: Decimal


class BudgetExhausted(Exception):
    """A budget ends the cycle; ``str`` names it and the setting that sets it."""


def turns_left(used: int, budgets: Budgets) -> None:
    """Raise when another model call would exceed the turns of one cycle."""
    if used >= budgets.max_turns:
        raise BudgetExhausted(
            f"turn budget exhausted: {used} model turns in this cycle (CATALYST_AGENT__MAX_TURNS={budgets.max_turns})"
        )


def spend_left(spent: Decimal, budgets: Budgets) -> None:
    """Raise when the day's spend has reached the daily budget."""
    if spent >= budgets.daily_usd:
        raise BudgetExhausted(
            f"daily spend budget exhausted: {usd(spent)} spent today (UTC) of"
            f" {usd(budgets.daily_usd)} (CATALYST_AGENT__DAILY_BUDGET_USD)"
        )


def output_cut(budgets: Budgets) -> BudgetExhausted:
    """A response stopped at max_tokens: what it says is cut off, and no tool call in it is sent."""
    return BudgetExhausted(
        f"output token budget exhausted: a response reached {budgets.max_output_tokens} tokens and was cut off"
        " (CATALYST_AGENT__MAX_OUTPUT_TOKENS); its tool calls were not sent"
    )


class SpendBook(Protocol):
    """Where the day's spend is kept, for every process (``store/spend.py``: PostgreSQL)."""

    async def spent(self, day: date) -> Decimal: ...

    async def add(
        self,
        *,
        day: date,
        agent_id: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_write_tokens: int,
        cache_read_tokens: int,
        usd: Decimal,
        at: datetime,
    ) -> Decimal: ...


@dataclass
class MemorySpendBook:
    """A spend book in memory (for tests of the pure parts and for runs that must not persist)."""

    by_day: dict[date, Decimal]

    async def spent(self, day: date) -> Decimal:
        return self.by_day.get(day, Decimal(0))

    async def add(
        self,
        *,
        day: date,
        agent_id: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_write_tokens: int,
        cache_read_tokens: int,
        usd: Decimal,
        at: datetime,
    ) -> Decimal:
        self.by_day[day] = self.by_day.get(day, Decimal(0)) + usd
        return self.by_day[day]
