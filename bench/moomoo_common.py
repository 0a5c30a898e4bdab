"""What bench/broker.py and bench/moomoo_peer.py share for Moomoo: the HK names they buy, the paper account and
risk limits that let hundreds of lots through, and the count of what the local OpenD emulator
(tests/fakes/opend_emulator.py) receives, by proto id, with the protocol's names for the ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final

from tests.fakes.opend_emulator import OpenDEmulator
from tests.fakes.opend_wire import MODULES

# One board lot (HK$3,600-25,000) of these per order, 100 and more per name in a long run: the paper account
# holds HK$100m and the position cap (HK$200,000 by default for HK) is lifted; every other rule is kept.
HK_SYMBOLS: Final = ("01810", "00939", "09988", "02318", "00005")
HK_CASH: Final = "100000000"
POSITION_CAP: Final = 10_000_000

# The proto ids futu-api sends, by Futu's own names: those the emulator answers, and the fill list it does not.
NAMES: Final = {**MODULES, 2211: "Trd_GetOrderFillList"}

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
