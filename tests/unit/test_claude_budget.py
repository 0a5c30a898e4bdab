"""The Claude policy's budgets and prices: pure arithmetic, exact decimals."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from catalyst_mcp.agent.budget import (
    BudgetExhausted,
    Budgets,
    MemorySpendBook,
    Price,
    Usage,
    cost,
    output_cut,
    spend_left,
    turns_left,
    usd,
)
from catalyst_mcp.agent_cli import choose_policy
from catalyst_mcp.config import DEFAULT_MODEL_PRICES, AgentSettings, ModelPrice
from catalyst_mcp.domain.errors import OperatorNeeded

SONNET = Price(Decimal(3), Decimal(15), Decimal("3.75"), Decimal("0.30"))
BUDGETS = Budgets(max_turns=3, max_output_tokens=1000, daily_usd=Decimal("1.50"))


def test_a_response_costs_each_kind_of_token_at_its_own_price_per_million() -> None:
    usage = Usage(input_tokens=1000, output_tokens=500, cache_write_tokens=2000, cache_read_tokens=10000)
    # 1000*3 + 500*15 + 2000*3.75 + 10000*0.30 = 3000 + 7500 + 7500 + 3000 = 21000 per million
    assert cost(usage, SONNET) == Decimal("0.021")
    assert cost(Usage(), SONNET) == 0


def test_many_small_calls_add_up_exactly() -> None:
    one = cost(Usage(input_tokens=1, output_tokens=1), SONNET)
    assert one == Decimal("0.000018")
    assert sum((one for _ in range(1_000_000)), Decimal(0)) == Decimal("18")


def test_usages_add_up_per_kind() -> None:
    assert Usage(1, 2, 3, 4) + Usage(10, 20, 30, 40) == Usage(11, 22, 33, 44)


def test_amounts_are_shown_in_cents_rounded_up_never_smaller_than_spent() -> None:
    assert usd(Decimal("0.001")) == "0.01 USD"
    assert usd(Decimal("1.5")) == "1.50 USD"
    assert usd(Decimal(0)) == "0.00 USD"


def test_the_turn_budget_allows_exactly_max_turns_calls() -> None:
    for used in range(3):
        turns_left(used, BUDGETS)
    with pytest.raises(BudgetExhausted, match=r"^turn budget exhausted: 3 model turns .*CATALYST_AGENT__MAX_TURNS=3"):
        turns_left(3, BUDGETS)


def test_the_daily_budget_ends_when_the_spend_reaches_it() -> None:
    spend_left(Decimal("1.49"), BUDGETS)
    with pytest.raises(
        BudgetExhausted, match=r"^daily spend budget exhausted: 1.50 USD spent today \(UTC\) of 1.50 USD"
    ):
        spend_left(Decimal("1.50"), BUDGETS)
    with pytest.raises(BudgetExhausted, match="CATALYST_AGENT__DAILY_BUDGET_USD"):
        spend_left(Decimal("7"), BUDGETS)


def test_a_cut_response_names_the_output_budget() -> None:
    message = str(output_cut(BUDGETS))
    assert message.startswith("output token budget exhausted: a response reached 1000 tokens")
    assert "CATALYST_AGENT__MAX_OUTPUT_TOKENS" in message and "not sent" in message


async def test_a_spend_book_keeps_each_day_apart() -> None:
    book = MemorySpendBook({})
    at = datetime(2026, 11, 25, 15, tzinfo=UTC)

    async def add(usd: str) -> Decimal:
        return await book.add(
            day=date(2026, 11, 25),
            usd=Decimal(usd),
            at=at,
            agent_id="a",
            model="m",
            input_tokens=1,
            output_tokens=1,
            cache_write_tokens=0,
            cache_read_tokens=0,
        )

    assert await add("0.5") == Decimal("0.5")
    assert await add("0.25") == Decimal("0.75")
    assert await book.spent(date(2026, 11, 26)) == 0


# --- settings: prices and the policy choice ----------------------------------------------------------------


def test_the_default_model_has_a_price_and_a_dated_snapshot_takes_its_familys() -> None:
    assert AgentSettings().price() == DEFAULT_MODEL_PRICES["claude-sonnet-4-6"]
    dated = AgentSettings(model="claude-haiku-4-5-20251001").price()
    assert dated == DEFAULT_MODEL_PRICES["claude-haiku-4-5"] and dated.output == Decimal(5)


def test_configured_prices_add_to_and_override_the_defaults() -> None:
    own = ModelPrice(input=Decimal(2), output=Decimal(8), cache_write=Decimal("2.5"), cache_read=Decimal("0.2"))
    settings = AgentSettings(model="claude-sonnet-4-6", prices={"claude-sonnet-4-6": own, "other": own})
    assert settings.price() == own
    assert AgentSettings(model="other", prices={"other": own}).price() == own


def test_a_model_without_a_price_is_refused_naming_the_setting() -> None:
    with pytest.raises(OperatorNeeded, match=r"^no price for model claude-next: set CATALYST_AGENT__PRICES"):
        AgentSettings(model="claude-next").price()
    with pytest.raises(OperatorNeeded):
        AgentSettings(model="claude-sonnet-4-60").price()  # a longer name is not a snapshot of the shorter


@pytest.mark.parametrize(
    ("asked", "env", "chosen"),
    [
        (None, {"ANTHROPIC_API_KEY": "k"}, ("claude", "ANTHROPIC_API_KEY is set")),
        (None, {}, ("rules", "ANTHROPIC_API_KEY is not set")),
        (None, {"ANTHROPIC_API_KEY": ""}, ("rules", "ANTHROPIC_API_KEY is not set")),
        ("rules", {"ANTHROPIC_API_KEY": "k"}, ("rules", "chosen with --policy")),
        ("claude", {"ANTHROPIC_AUTH_TOKEN": "t"}, ("claude", "chosen with --policy")),
    ],
)
def test_the_policy_defaults_to_claude_when_a_key_is_set(
    asked: str | None, env: dict[str, str], chosen: tuple[str, str]
) -> None:
    assert choose_policy(asked, env) == chosen


def test_the_claude_policy_without_credentials_is_refused() -> None:
    with pytest.raises(OperatorNeeded, match="needs ANTHROPIC_API_KEY"):
        choose_policy("claude", {})
