"""Board lots per symbol: the broker's figure when it reports one, else a maintained table, else the
market's default (US 1 share, HK 100 shares)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import InvalidInput

DEFAULT_LOT: Final[Mapping[Market, Decimal]] = MappingProxyType({Market.US: Decimal(1), Market.HK: Decimal(100)})

# HKEX board lots of frequently traded stocks whose lot is not the default 100. Issuers may change a
# lot; a broker that reports lots overrides this table.
HK_BOARD_LOTS: Final[Mapping[str, Decimal]] = MappingProxyType(
    {
        symbol: Decimal(lot)
        for symbol, lot in (
            ("00001", 500),  # CK Hutchison
            ("00002", 500),  # CLP Holdings
            ("00003", 1000),  # HK & China Gas
            ("00005", 400),  # HSBC Holdings
            ("00006", 500),  # Power Assets
            ("00027", 1000),  # Galaxy Entertainment
            ("00066", 500),  # MTR Corporation
            ("00175", 1000),  # Geely Automobile
            ("00386", 2000),  # Sinopec
            ("00670", 2000),  # China Eastern Airlines
            ("00857", 2000),  # PetroChina
            ("00883", 1000),  # CNOOC
            ("00939", 1000),  # China Construction Bank
            ("00941", 500),  # China Mobile
            ("01211", 500),  # BYD
            ("01299", 200),  # AIA Group
            ("01398", 1000),  # ICBC
            ("01810", 200),  # Xiaomi
            ("02020", 200),  # ANTA Sports
            ("02318", 500),  # Ping An Insurance
            ("03988", 1000),  # Bank of China
            ("09618", 50),  # JD.com
        )
    }
)


def table_lot(market: Market, symbol: str) -> Decimal:
    """The lot from the maintained table, else the market's default."""
    if market is Market.HK:
        return HK_BOARD_LOTS.get(symbol, DEFAULT_LOT[market])
    return DEFAULT_LOT[market]


def lot_lookup(market: Market, broker_lot: Callable[[str], Decimal]) -> Callable[[str], Decimal]:
    """A lookup that asks the broker first and falls back to the table for symbols it does not list."""
    cache: dict[str, Decimal] = {}

    def lot(symbol: str) -> Decimal:
        found = cache.get(symbol)
        if found is None:
            try:
                found = broker_lot(symbol)
            except InvalidInput:
                found = table_lot(market, symbol)
            cache[symbol] = found
        return found

    return lot
