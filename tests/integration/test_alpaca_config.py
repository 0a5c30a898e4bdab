"""Paper unless live is asked for twice; the endpoint never contradicts the mode; keys are required."""

from __future__ import annotations

import pytest
from mcp import Client

from catalyst_mcp.brokers.alpaca import open_alpaca
from catalyst_mcp.brokers.alpaca_config import DATA_URL, LIVE_URL, PAPER_URL, endpoints_for
from catalyst_mcp.config import Settings, load_settings
from catalyst_mcp.domain.enums import BrokerMode
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.markets.profiles import HK_PROFILE, US_PROFILE
from catalyst_mcp.server.app import build_server
from tests.fakes.alpaca_harness import alpaca_runtime, alpaca_settings

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CATALYST_BROKER_MODE", "CATALYST_ALLOW_LIVE", "CATALYST_ALPACA_URL", "CATALYST_ALPACA_DATA_URL"):
        monkeypatch.delenv(name, raising=False)


def test_live_without_the_allow_flag_is_refused_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_BROKER_MODE", "live")

    with pytest.raises(OperatorNeeded) as caught:
        load_settings(broker="alpaca")

    assert "CATALYST_BROKER_MODE=live" in str(caught.value) and "CATALYST_ALLOW_LIVE=yes" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_allow_flag_alone_does_not_make_it_live(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_ALLOW_LIVE", "yes")

    where = endpoints_for(load_settings(broker="alpaca"))

    assert (where.mode, where.trading_url, where.data_url) == (BrokerMode.PAPER, PAPER_URL, DATA_URL)


def test_live_with_both_flags_points_at_the_live_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYST_BROKER_MODE", "live")
    monkeypatch.setenv("CATALYST_ALLOW_LIVE", "yes")

    where = endpoints_for(load_settings(broker="alpaca"))

    assert (where.mode, where.trading_url) == (BrokerMode.LIVE, LIVE_URL)


def test_the_adapter_refuses_live_settings_that_skipped_validation() -> None:
    unchecked = Settings.model_construct(broker_mode=BrokerMode.LIVE, allow_live=False)

    with pytest.raises(OperatorNeeded, match="CATALYST_ALLOW_LIVE=yes"):
        endpoints_for(unchecked)


def test_an_explicit_url_may_not_contradict_the_mode() -> None:
    with pytest.raises(OperatorNeeded, match="paper mode, but CATALYST_ALPACA_URL points at Alpaca's live"):
        endpoints_for(Settings(alpaca_url=LIVE_URL + "/"))
    with pytest.raises(OperatorNeeded, match="live mode, but CATALYST_ALPACA_URL points at Alpaca's paper"):
        endpoints_for(Settings(broker_mode="live", allow_live=True, alpaca_url=PAPER_URL))


@pytest.mark.parametrize(
    "url",
    [
        "https://api.alpaca.markets.",
        "https://API.Alpaca.Markets",
        "https://api.alpaca.markets.:443/v2",
        "http://api.alpaca.markets",
        "https://user@api.alpaca.markets./",
    ],
)
def test_the_live_endpoint_is_recognised_however_it_is_spelled(url: str) -> None:
    with pytest.raises(OperatorNeeded, match="paper mode, but CATALYST_ALPACA_URL points at Alpaca's live"):
        endpoints_for(Settings(alpaca_url=url))


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("alpaca_url", "paper-api.alpaca.markets"),
        ("alpaca_url", "ftp://paper-api.alpaca.markets"),
        ("alpaca_data_url", "https://"),
    ],
)
def test_a_url_without_scheme_or_host_is_refused_naming_the_setting(field: str, url: str) -> None:
    setting = "CATALYST_" + field.upper()
    with pytest.raises(OperatorNeeded, match=f"^{setting} must be an http"):
        endpoints_for(Settings.model_validate({field: url}))


def test_an_explicit_url_is_used_as_a_bare_origin() -> None:
    where = endpoints_for(Settings(alpaca_url="http://127.0.0.1:9/v2/", alpaca_data_url="http://127.0.0.1:8/"))

    assert (where.trading_url, where.data_url) == ("http://127.0.0.1:9", "http://127.0.0.1:8")


async def test_start_up_without_keys_or_for_another_market_fails_with_one_line(clock: FixedClock) -> None:
    with pytest.raises(OperatorNeeded, match="needs APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        async with open_alpaca(Settings(alpaca_url="http://127.0.0.1:9"), US_PROFILE, clock):
            pass  # pragma: no cover
    with pytest.raises(OperatorNeeded, match="CATALYST_MARKET=US"):
        async with open_alpaca(alpaca_settings("http://127.0.0.1:9"), HK_PROFILE, clock):
            pass  # pragma: no cover


@pytest.mark.parametrize(("extra", "mode"), [({}, "paper"), ({"broker_mode": "live", "allow_live": True}, "live")])
async def test_the_mode_is_visible_in_workflow_status(
    database_url: str, clock: FixedClock, extra: dict[str, object], mode: str
) -> None:
    async with (
        alpaca_runtime(database_url, clock, **extra) as (_, runtime),
        Client(build_server(runtime.settings, runtime=runtime)) as client,
    ):
        status = await client.call_tool("workflow_status", {})

    assert runtime.broker.name == "alpaca"
    assert status.structured_content is not None and status.structured_content["broker_mode"] == mode
