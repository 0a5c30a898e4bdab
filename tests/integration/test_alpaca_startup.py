"""A server opens Alpaca without importing its SDK: the configuration and the account are checked at start-up
through one plain request (wrong keys, a forbidden endpoint stop start-up with one line; an endpoint that does
not answer only warns), and the SDK is loaded by the first call that needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.clocks import FixedClock
from tests.fakes.alpaca_emulator import AlpacaEmulator, serve
from tests.fakes.alpaca_harness import KEY_ID, SECRET, alpaca_settings

pytestmark = pytest.mark.anyio


async def test_keys_alpaca_refuses_stop_start_up_with_one_line_and_no_secret(
    database_url: str, clock: FixedClock
) -> None:
    emulator = AlpacaEmulator(clock, key_id="PKSOMEONEELSE", secret_key="another-secret")
    async with serve(emulator) as url:
        with pytest.raises(OperatorNeeded) as caught:
            async with open_runtime(alpaca_settings(url, database_url), clock=clock):
                pass  # pragma: no cover
    message = str(caught.value)
    assert "401" in message and "APCA_API_KEY_ID" in message and "\n" not in message
    assert SECRET not in message and KEY_ID not in message


@pytest.mark.parametrize(("status", "says"), [(403, "forbids"), (422, "did not serve the account")])
async def test_an_endpoint_that_refuses_the_account_stops_start_up(
    database_url: str, clock: FixedClock, status: int, says: str
) -> None:
    emulator = AlpacaEmulator(clock, key_id=KEY_ID, secret_key=SECRET)
    emulator.inject("GET", "/v2/account", status=status, message=f"no account for {SECRET}")
    async with serve(emulator) as url:
        with pytest.raises(OperatorNeeded) as caught:
            async with open_runtime(alpaca_settings(url, database_url), clock=clock):
                pass  # pragma: no cover
    assert says in str(caught.value) and str(status) in str(caught.value) and SECRET not in str(caught.value)


async def test_an_endpoint_in_trouble_at_start_up_only_warns_and_the_first_call_works_once_it_answers(
    database_url: str, clock: FixedClock
) -> None:
    emulator = AlpacaEmulator(clock, key_id=KEY_ID, secret_key=SECRET)
    emulator.inject("GET", "/v2/account", status=503, message="maintenance")
    async with serve(emulator) as url, open_runtime(alpaca_settings(url, database_url), clock=clock) as rt:
        account = await rt.broker.get_account()
        quote = await rt.market_data.get_quote("AAPL")
    assert account.currency == "USD" and quote is not None


def test_what_a_server_imports_to_open_alpaca_does_not_import_the_sdk() -> None:
    probe = (
        "import sys, catalyst_mcp.bootstrap, catalyst_mcp.server.app, catalyst_mcp.brokers.alpaca_lazy;"
        " print('alpaca' in sys.modules, 'pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"
