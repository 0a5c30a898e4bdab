"""CATALYST_SCANNER__…: overrides over each market's defaults, tiers checked for loosening in order, and the
universe normalised for the market — a bad value stops start-up with one line naming the setting."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import pytest

from catalyst_mcp.config import load_settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.signals.scanner import ScanTier, default_criteria

D = Decimal


@pytest.fixture(autouse=True)
def _no_catalyst_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CATALYST_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("market", [Market.US, Market.HK])
def test_without_settings_each_market_scans_with_its_defaults(market: Market) -> None:
    settings = load_settings(market=market.value)
    assert settings.scanner.criteria(market) == default_criteria(market)
    assert settings.scanner.symbols(market) is None


def test_filters_and_weights_set_in_the_environment_replace_only_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_MARKET", "hk")
    monkeypatch.setenv("CATALYST_SCANNER__MIN_PRICE", "5")
    monkeypatch.setenv("CATALYST_SCANNER__MAX_SPREAD_PCT", "0.8")
    monkeypatch.setenv("CATALYST_SCANNER__VOLUME_WEIGHT", "1")

    criteria = load_settings().scanner.criteria(Market.HK)

    hk = default_criteria(Market.HK)
    assert (criteria.filters.min_price, criteria.filters.max_spread_pct) == (D(5), D("0.8"))
    assert criteria.filters.min_avg_turnover == hk.filters.min_avg_turnover
    assert (criteria.weights.volume, criteria.weights.gap) == (D(1), hk.weights.gap)
    assert criteria.tiers == hk.tiers


def test_tiers_in_the_environment_replace_the_markets(monkeypatch: pytest.MonkeyPatch) -> None:
    tiers = [{"name": "hot", "min_change_pct": 5, "min_relative_volume": 3}, {"name": "any", "min_change_pct": 0}]
    monkeypatch.setenv("CATALYST_SCANNER__TIERS", json.dumps(tiers))

    criteria = load_settings().scanner.criteria(Market.US)

    assert criteria.tiers == (ScanTier("hot", D(5), D(3)), ScanTier("any", D(0)))


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TIERS", json.dumps([{"name": "a", "min_change_pct": 1}, {"name": "b", "min_change_pct": 2}]), "not looser"),
        ("TIERS", "[]", "at least 1"),
        ("TIERS", json.dumps([{"name": "a", "min_volume": 1}]), "TIERS__0__MIN_VOLUME: Extra inputs"),
        ("MAX_SPREAD_PCT", "0", "greater than 0"),
        ("MIN_PRICE", "-1", "greater than or equal to 0"),
        ("UNIVERSE", "AAPL,@@", "'@@' is not a symbol"),
    ],
)
def test_a_bad_scanner_setting_stops_start_up_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(f"CATALYST_SCANNER__{name}", value)
    with pytest.raises(OperatorNeeded) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message and says in message
    assert message.startswith("invalid setting CATALYST_SCANNER")


def test_a_price_range_upside_down_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_SCANNER__MIN_PRICE", "50")
    monkeypatch.setenv("CATALYST_SCANNER__MAX_PRICE", "10")
    with pytest.raises(OperatorNeeded, match="min_price 50 is above max_price 10"):
        load_settings()


def test_the_universe_is_read_comma_separated_and_normalised_for_the_market(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_SCANNER__UNIVERSE", " 700, 0005.HK ,HK.09988,700")
    assert load_settings(market="HK").scanner.symbols(Market.HK) == ("00700", "00005", "09988")

    monkeypatch.setenv("CATALYST_SCANNER__UNIVERSE", "aapl,brk-b")
    assert load_settings().scanner.symbols(Market.US) == ("AAPL", "BRK.B")


def test_a_symbol_of_the_other_market_is_refused_when_the_server_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_SCANNER__UNIVERSE", "AAPL,700")
    settings = load_settings()
    with pytest.raises(OperatorNeeded, match=r"^invalid setting CATALYST_SCANNER__UNIVERSE: malformed US symbol '700'"):
        settings.scanner.symbols(settings.market)
