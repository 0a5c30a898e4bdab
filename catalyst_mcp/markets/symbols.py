"""Symbol normalisation per market, before anything compares or stores a symbol."""

from __future__ import annotations

import re

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import InvalidInput

_US = re.compile(r"^[A-Z]{1,5}(\.[A-Z]{1,2})?$")
_HK = re.compile(r"^(?:HK\.)?([0-9]{1,5})(?:\.HK)?$")


def normalise_symbol(market: Market, raw: str) -> str:
    """The canonical form: US upper-case tickers (``BRK.B``); HK 5-digit codes (``700`` -> ``00700``).

    Raises InvalidInput (one line) for a malformed symbol; whether it is tradable is the risk engine's call.
    """
    text = raw.strip().upper()
    if market is Market.US:
        if _US.fullmatch(text):
            return text
        raise InvalidInput(f"malformed US symbol {raw!r}: expected a ticker such as AAPL or BRK.B")
    match = _HK.fullmatch(text)
    if match and int(match.group(1)) > 0:
        return match.group(1).zfill(5)
    raise InvalidInput(f"malformed HK symbol {raw!r}: expected a stock code such as 00700, 700 or 0700.HK")
