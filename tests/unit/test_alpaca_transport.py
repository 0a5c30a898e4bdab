"""The Alpaca session's own query encoding is exactly what ``requests`` would send (the SDK passes its request
models' fields: strings, string enums, numbers, booleans, lists, None)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st

from catalyst_mcp.brokers.alpaca_transport import encode_params


class Feed(str, Enum):  # noqa: UP042 - as alpaca-py defines its enums (str() is not the value)
    IEX = "iex"
    SIP = "sip"


scalars = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.sampled_from(list(Feed)),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
)
params = st.dictionaries(st.text(min_size=1, max_size=6), st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=5)


@given(params)
def test_parameters_are_encoded_exactly_as_requests_encodes_them(values: dict[str, Any]) -> None:
    prepared = requests.Request("GET", "http://example.invalid/v2/orders", params=values).prepare()
    assert prepared.url is not None
    expected = prepared.url.partition("?")[2]
    assert encode_params(values) == expected
