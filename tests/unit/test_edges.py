"""The edges of the core: plain decimals, symbol normalisation, strict tool arguments and settings."""

from __future__ import annotations

import os
import re
import string
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver import Context
from pydantic import Field, ValidationError

from catalyst_mcp.config import load_settings
from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import BrokerMode, Market, OrderType, Side
from catalyst_mcp.domain.errors import InvalidInput, OperatorNeeded
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server.validation import arguments_model, one_line

D = Decimal

# --- plain -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1E+2", "100"),
        ("190.120", "190.12"),
        ("0.00", "0"),
        ("-0", "0"),
        ("-0.000", "0"),
        ("0E-7", "0"),
        ("0E+3", "0"),
        ("1.5E-7", "0.00000015"),
        ("-12.50", "-12.5"),
        ("100", "100"),
        ("2.5E+6", "2500000"),
        ("12345678901234567890123456.78", "12345678901234567890123456.78"),
    ],
)
def test_plain_writes_a_decimal_in_plain_notation_without_trailing_zeros(value: str, text: str) -> None:
    assert plain(D(value)) == text


@pytest.mark.parametrize("value", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"])
def test_plain_refuses_a_value_that_is_not_a_finite_number(value: str) -> None:
    with pytest.raises(ValueError, match="not a finite decimal"):
        plain(D(value))


def test_plain_keeps_every_digit_of_a_long_decimal() -> None:
    assert plain(D("1.00000000000000000000000000001")) == "1.00000000000000000000000000001"


scaled_decimals = st.builds(
    lambda digits, exponent: D(digits).scaleb(exponent),
    st.integers(-(10**15), 10**15),
    st.integers(-12, 12),
)


@settings(max_examples=200, deadline=None)
@given(value=scaled_decimals | st.decimals(min_value=-(10**20), max_value=10**20, places=4))
def test_plain_is_lossless_and_never_uses_exponent_notation_up_to_28_digits(value: Decimal) -> None:
    text = plain(value)
    assert D(text) == value
    assert re.fullmatch(r"-?(0|[1-9]\d*)(\.\d*[1-9])?", text), text
    assert text != "-0"


# --- symbols ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "symbol"),
    [
        ("aapl", "AAPL"),
        ("AAPL", "AAPL"),
        (" msft ", "MSFT"),
        ("BRK.B", "BRK.B"),
        ("brk.b", "BRK.B"),
        ("F", "F"),
        ("GOOGL", "GOOGL"),
    ],
)
def test_a_us_symbol_is_normalised_to_an_upper_case_ticker(raw: str, symbol: str) -> None:
    assert normalise_symbol(Market.US, raw) == symbol


@pytest.mark.parametrize(
    "raw", ["AAPL!!", "", "   ", "TOOLONGX", "BRK.BBB", "AA PL", "123", "BRK.", ".B", "AA\nPL", "00700"]
)
def test_a_malformed_us_symbol_is_refused_with_one_line(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise_symbol(Market.US, raw)
    message = str(refused.value)
    assert message.startswith("malformed US symbol")
    assert "\n" not in message and "\r" not in message


@pytest.mark.parametrize(
    ("raw", "symbol"),
    [
        ("700", "00700"),
        ("0700", "00700"),
        ("00700", "00700"),
        ("HK.00700", "00700"),
        ("hk.700", "00700"),
        ("0700.HK", "00700"),
        ("700.hk", "00700"),
        (" 700 ", "00700"),
        ("5", "00005"),
        ("99999", "99999"),
    ],
)
def test_an_hk_symbol_is_normalised_to_a_five_digit_code(raw: str, symbol: str) -> None:
    assert normalise_symbol(Market.HK, raw) == symbol


@pytest.mark.parametrize(
    "raw", ["0", "00000", "123456", "ABC", "", "HK.", ".HK", "-700", "700.5", "7 00", "HK700", "AAPL"]
)
def test_a_malformed_hk_symbol_is_refused_with_one_line(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise_symbol(Market.HK, raw)
    message = str(refused.value)
    assert message.startswith("malformed HK symbol")
    assert "\n" not in message


@pytest.mark.parametrize("raw", ["０７００", "٧٠٠"])
def test_an_hk_symbol_in_non_ascii_digits_never_becomes_a_non_canonical_code(raw: str) -> None:
    try:
        symbol = normalise_symbol(Market.HK, raw)
    except InvalidInput:
        return
    assert symbol == "00700"


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=12))
def test_a_us_symbol_is_either_refused_or_canonical_and_stable(raw: str) -> None:
    try:
        symbol = normalise_symbol(Market.US, raw)
    except InvalidInput as refused:
        assert "\n" not in str(refused)
        return
    assert re.fullmatch(r"[A-Z]{1,5}(\.[A-Z]{1,2})?", symbol, flags=re.ASCII)
    assert normalise_symbol(Market.US, symbol) == symbol


@settings(max_examples=200, deadline=None)
@given(raw=st.text(alphabet=string.digits + "HKhk. ", max_size=12) | st.integers(0, 999_999).map(str))
def test_an_ascii_hk_symbol_is_either_refused_or_a_stable_five_digit_code(raw: str) -> None:
    try:
        symbol = normalise_symbol(Market.HK, raw)
    except InvalidInput as refused:
        assert "\n" not in str(refused)
        return
    assert re.fullmatch(r"\d{5}", symbol, flags=re.ASCII) and symbol != "00000"
    assert int(symbol) == int(re.sub(r"\D", "", raw))
    assert normalise_symbol(Market.HK, symbol) == symbol


# --- strict tool arguments -------------------------------------------------------------------------------

Quantity = Annotated[Decimal, Field(gt=0, allow_inf_nan=False, description="shares, a positive decimal")]
Price = Annotated[Decimal, Field(gt=0, allow_inf_nan=False, description="a positive decimal price")]
SymbolArg = Annotated[str, Field(min_length=1, max_length=16)]


async def check_order(
    ctx: Context,
    symbol: SymbolArg,
    side: Side,
    quantity: Quantity,
    order_type: OrderType,
    limit_price: Price | None = None,
) -> None:
    """A tool shaped like the server's check_risk."""


Arguments = arguments_model(check_order)
GOOD: dict[str, Any] = {"symbol": "AAPL", "side": "buy", "quantity": "10", "order_type": "market"}


def complaint(arguments: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as invalid:
        Arguments.model_validate(arguments)
    return one_line("check_order", invalid.value)


def test_the_arguments_model_has_the_tool_arguments_but_not_its_context() -> None:
    assert list(Arguments.model_fields) == ["symbol", "side", "quantity", "order_type", "limit_price"]


@pytest.mark.parametrize(("given_quantity", "held"), [("10", D(10)), (10, D(10)), ("0.5", D("0.5")), (2.5, D("2.5"))])
def test_well_formed_arguments_are_held_as_decimals(given_quantity: Any, held: Decimal) -> None:
    arguments = Arguments.model_validate({**GOOD, "quantity": given_quantity})
    assert arguments.quantity == held  # type: ignore[attr-defined]
    assert isinstance(arguments.quantity, Decimal)  # type: ignore[attr-defined]
    assert arguments.limit_price is None  # type: ignore[attr-defined]


def test_an_unknown_argument_is_named_in_one_line() -> None:
    assert complaint({**GOOD, "qty": 5}) == "check_order: unknown argument 'qty'"


def test_a_missing_argument_is_named_in_one_line() -> None:
    arguments = dict(GOOD)
    del arguments["quantity"]
    assert complaint(arguments) == "check_order: missing argument 'quantity'"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("NaN", "check_order: invalid quantity: input should be a finite number"),
        (float("nan"), "check_order: invalid quantity: input should be a finite number"),
        ("Infinity", "check_order: invalid quantity: input should be a finite number"),
        ("-1", "check_order: invalid quantity: input should be greater than 0"),
        (-0.5, "check_order: invalid quantity: input should be greater than 0"),
        (0, "check_order: invalid quantity: input should be greater than 0"),
        ("0.00", "check_order: invalid quantity: input should be greater than 0"),
        ("abc", "check_order: invalid quantity: input should be a valid decimal"),
        ("", "check_order: invalid quantity: input should be a valid decimal"),
    ],
)
def test_a_bad_quantity_is_one_line_starting_with_the_tool_name(bad: Any, message: str) -> None:
    assert complaint({**GOOD, "quantity": bad}) == message


@pytest.mark.parametrize("bad", [None, True, [1], {"value": 1}])
def test_a_quantity_of_the_wrong_type_is_one_line_naming_the_quantity(bad: Any) -> None:
    text = complaint({**GOOD, "quantity": bad})
    assert text.startswith("check_order: invalid quantity: ")
    assert "\n" not in text


def test_several_problems_are_listed_once_each_on_one_line() -> None:
    text = complaint({"side": "BUY", "quantity": "NaN", "order_type": "market", "extra": 1, "more": 2})
    assert text == (
        "check_order: missing argument 'symbol'; invalid side: input should be 'buy' or 'sell'; "
        "invalid quantity: input should be a finite number; unknown argument 'extra'; unknown argument 'more'"
    )


def test_an_unknown_argument_with_a_line_break_in_its_name_still_gives_one_line() -> None:
    assert "\n" not in complaint({**GOOD, "bad\nname": 1})


CONTROL_CHARACTERS: tuple[Literal["Cc"]] = ("Cc",)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)
argument_names = st.sampled_from([*GOOD, "limit_price"]) | st.text(
    alphabet=st.characters(codec="ascii", exclude_categories=CONTROL_CHARACTERS, exclude_characters=";"),
    min_size=1,
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(arguments=st.dictionaries(argument_names, json_values | st.sampled_from(["10", "buy", "limit"])))
def test_any_invalid_arguments_give_one_line_starting_with_the_tool_name(arguments: dict[str, Any]) -> None:
    try:
        Arguments.model_validate(arguments)
    except ValidationError as invalid:
        text = one_line("check_order", invalid)
        assert text.startswith("check_order: ")
        assert len(text.splitlines()) == 1
        parts = text.removeprefix("check_order: ").split("; ")
        assert len(parts) == len(set(parts))
        assert all(re.match(r"(unknown argument|missing argument|invalid) ", part) for part in parts)


# --- settings --------------------------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment: no CATALYST_ or Alpaca variable from the machine leaks into these tests."""
    for name in list(os.environ):
        if name.startswith(("CATALYST_", "APCA_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_default_settings_trade_paper_on_the_us_market(environment: pytest.MonkeyPatch) -> None:
    loaded = load_settings()
    assert loaded.market is Market.US
    assert loaded.broker_mode is BrokerMode.PAPER
    assert loaded.risk.max_position_value == D("25000")


def test_an_invalid_nested_setting_is_an_operator_error_naming_that_setting(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("CATALYST_RISK__MAX_POSITION_VALUE", "abc")
    with pytest.raises(OperatorNeeded) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith("invalid setting CATALYST_RISK__MAX_POSITION_VALUE: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CATALYST_RISK__MAX_POSITION_VALUE", "-1"),
        ("CATALYST_RISK__MAX_POSITION_VALUE", "NaN"),
        ("CATALYST_RISK__MAX_OPEN_POSITIONS", "many"),
        ("CATALYST_SYNC__OUTAGE_SHARE", "1.5"),
        ("CATALYST_MARKET", "JP"),
        ("CATALYST_BROKER", "ib"),
        ("CATALYST_AGENT_ID", "no spaces allowed"),
        ("CATALYST_LOG_LEVEL", "chatty"),
    ],
)
def test_every_invalid_setting_is_named_in_one_line(environment: pytest.MonkeyPatch, name: str, value: str) -> None:
    environment.setenv(name, value)
    with pytest.raises(OperatorNeeded) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"invalid setting {name}: ")
    assert "\n" not in message


def test_an_unknown_nested_setting_is_refused_by_name(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CATALYST_RISK__MAX_POSITON_VALUE", "5000")
    with pytest.raises(OperatorNeeded, match=r"^invalid setting CATALYST_RISK__MAX_POSITON_VALUE: "):
        load_settings()


def test_a_valid_nested_setting_is_read_as_a_decimal(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CATALYST_RISK__MAX_POSITION_VALUE", "5000.50")
    assert load_settings().risk.max_position_value == D("5000.50")


@pytest.mark.parametrize("value", ["hk", "HK", "Hk"])
def test_the_market_is_accepted_in_any_case(environment: pytest.MonkeyPatch, value: str) -> None:
    environment.setenv("CATALYST_MARKET", value)
    assert load_settings().market is Market.HK


def test_a_command_line_option_beats_the_environment(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CATALYST_MARKET", "HK")
    assert load_settings(market="us").market is Market.US
    assert load_settings(market=None).market is Market.HK


def test_live_trading_without_the_allow_flag_is_refused(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CATALYST_BROKER_MODE", "live")
    with pytest.raises(OperatorNeeded) as refused:
        load_settings()
    message = str(refused.value)
    assert "CATALYST_ALLOW_LIVE" in message
    assert "\n" not in message


def test_live_trading_is_accepted_only_when_asked_for_twice(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CATALYST_BROKER_MODE", "live")
    environment.setenv("CATALYST_ALLOW_LIVE", "yes")
    assert load_settings().broker_mode is BrokerMode.LIVE
    environment.delenv("CATALYST_BROKER_MODE")
    assert load_settings().broker_mode is BrokerMode.PAPER


def test_an_unparsable_nested_setting_is_an_operator_error_naming_it(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CATALYST_RISK", "max_position_value=5000")
    with pytest.raises(OperatorNeeded, match="CATALYST_RISK"):
        load_settings()
