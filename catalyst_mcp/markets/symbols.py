"""Symbol normalisation per market, before anything compares or stores a symbol."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import InvalidInput, shown

# A share-class separator may come as '.', '-' or '/' (BRK.B, BRK-B, BRK/B); the canonical one is '.'.
_US = re.compile(r"^([A-Z]{1,5})(?:[./-]([A-Z]{1,2}))?$")
# HK codes: 700, 0700, 00700, HK.00700 or 0700.HK — a prefix or a suffix, not both.
_HK = re.compile(r"^(?:HK\.([0-9]{1,5})|([0-9]{1,5})(?:\.HK)?)$")


def normalise_symbol(market: Market, raw: str) -> str:
    """The canonical form: US upper-case tickers (``BRK.B``); HK 5-digit codes (``700`` -> ``00700``).

    Raises InvalidInput (one line) for a malformed symbol; whether it is tradable is the risk engine's call.
    """
    canonical = canonical_symbol(market, raw)
    if canonical is not None:
        return canonical
    if market is Market.US:
        raise InvalidInput(f"malformed US symbol {shown(raw)}: expected a ticker such as AAPL or BRK.B")
    raise InvalidInput(f"malformed HK symbol {shown(raw)}: expected a stock code such as 00700, 700 or 0700.HK")


@lru_cache(maxsize=65536)
def canonical_symbol(market: Market, raw: str) -> str | None:
    """The canonical form of ``raw``, or None when it is not a symbol of ``market``."""
    text = raw.strip().upper()
    if market is Market.US:
        us = _US.fullmatch(text)
        if us is None:
            return None
        return us.group(1) if us.group(2) is None else f"{us.group(1)}.{us.group(2)}"
    hk = _HK.fullmatch(text)
    if hk is None:
        return None
    digits = hk.group(1) or hk.group(2)
    return digits.zfill(5) if int(digits) > 0 else None


def listed_symbol(raw: str) -> str:
    """A symbol of either market in canonical form, for lists that serve both (the risk limits' restricted and
    allowed symbols): a stock code of HK, else a ticker of US, else the entry upper-cased as given."""
    return canonical_symbol(Market.HK, raw) or canonical_symbol(Market.US, raw) or raw.strip().upper()


def canonicaliser(market: Market) -> Callable[[str], str | None]:
    """``canonical_symbol`` for ``market`` with a fast path for a symbol already in canonical form (what our
    own writers store and most brokers report): plain string checks instead of a cache lookup or a regex."""
    if market is Market.US:

        def us(raw: str) -> str | None:
            if len(raw) <= 5 and raw.isascii() and raw.isalpha() and raw.isupper():
                return raw
            return canonical_symbol(market, raw)

        return us

    def hk(raw: str) -> str | None:
        if len(raw) == 5 and raw.isascii() and raw.isdigit() and raw != "00000":
            return raw
        return canonical_symbol(market, raw)

    return hk
