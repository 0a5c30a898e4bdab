"""What bench/broker.py and bench/moomoo_peer.py share for Moomoo: the HK names they buy, the paper account and
risk limits that let hundreds of lots through, and the count of what the local OpenD emulator
(tests/fakes/opend_emulator.py) receives, by proto id, with the protocol's names for the ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final

from tests.fakes.opend_emulator import OpenDEmulator

# One board lot (HK$3,600-25,000) of these per order, 100 and more per name in a long run: the paper account
# holds HK$100m and the position cap (HK$200,000 by default for HK) is lifted; every other rule is kept.
HK_SYMBOLS: Final = ("01810", "00939", "09988", "02318", "00005")
HK_CASH: Final = "100000000"
POSITION_CAP: Final = 10_000_000

# The proto ids futu-api sends (Futu's own names, as in the SDK's ProtoId), those the emulator answers and more.
NAMES: Final = {
    1001: "InitConnect",
    1002: "GetGlobalState",
    1004: "KeepAlive",
    2001: "Trd_GetAccList",
    2005: "Trd_UnlockTrade",
    2008: "Trd_SubAccPush",
    2101: "Trd_GetFunds",
    2102: "Trd_GetPositionList",
    2201: "Trd_GetOrderList",
    2202: "Trd_PlaceOrder",
    2205: "Trd_ModifyOrder",
    2208: "Trd_UpdateOrder",
    2211: "Trd_GetOrderFillList",
    2221: "Trd_GetHistoryOrderList",
    3103: "Qot_RequestHistoryKL",
    3202: "Qot_GetStaticInfo",
    3203: "Qot_GetSecuritySnapshot",
}

Tally = Callable[[], Counter[str]]  # the requests an emulator has received so far, by label


def label(proto_id: int) -> str:
    """``2202 Trd_PlaceOrder``."""
    return f"{proto_id} {NAMES.get(proto_id, 'unknown')}"


def opend_tally(emulator: OpenDEmulator) -> Tally:
    """The emulator's requests so far by proto (its counter is written by the emulator's thread)."""

    def tally() -> Counter[str]:
        with emulator.lock:
            counts = dict(emulator.counts)
        return Counter({label(proto): n for proto, n in counts.items()})

    return tally
