"""OpenD's wire format, as the emulator speaks it: a 44-byte little-endian header and a protobuf body built
from futu-api's own generated classes.

Header: ``"FT"``, proto id (u32), body format (u8, 0 = protobuf), protocol version (u8), serial (u32), body
length (u32), SHA-1 of the body (20 bytes), 8 reserved bytes. Encryption stays off (the SDK's default), so
the body travels as it is serialised. A reply carries the proto id and serial of its request.
"""

from __future__ import annotations

import hashlib
import importlib
import signal
import struct
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

HEAD: Final = struct.Struct("<2sIBBII20s8s")
PROTOBUF: Final = 0

# The proto ids the emulator answers or pushes, with the generated module of each.
MODULES: Final = {
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
    2221: "Trd_GetHistoryOrderList",
    3103: "Qot_RequestHistoryKL",
    3202: "Qot_GetStaticInfo",
    3203: "Qot_GetSecuritySnapshot",
}
NAMES: Final = {name: proto for proto, name in MODULES.items()}


def futu_module(name: str) -> ModuleType:
    """``futu.common.pb.<name>_pb2``. Importing anything under ``futu`` runs the package's ``__init__``, which on
    the main thread replaces the SIGINT handler with one that calls ``os._exit``: the handler is put back."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        return importlib.import_module(f"futu.common.pb.{name}_pb2")
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


_modules: dict[int, ModuleType] = {}


def module_of(proto_id: int) -> ModuleType:
    found = _modules.get(proto_id)
    if found is None:
        found = _modules[proto_id] = futu_module(MODULES[proto_id])
    return found


def common() -> ModuleType:
    return futu_module("Trd_Common")


def qot_common() -> ModuleType:
    return futu_module("Qot_Common")


@dataclass(frozen=True, slots=True)
class Frame:
    proto_id: int
    serial: int
    body: bytes

    def request(self) -> Any:
        """The body parsed as the proto's Request message."""
        message = module_of(self.proto_id).Request()
        message.ParseFromString(self.body)
        return message


def encode(proto_id: int, serial: int, message: Any) -> bytes:
    body: bytes = message.SerializeToString()  # raises when a required field is missing: the SDK would refuse it
    return HEAD.pack(b"FT", proto_id, PROTOBUF, 0, serial, len(body), hashlib.sha1(body).digest(), bytes(8)) + body


def decode_head(head: bytes) -> tuple[int, int, int]:
    """(proto id, serial, body length) of a header; ValueError when it is not OpenD's."""
    flag, proto_id, fmt, _, serial, length, _, _ = HEAD.unpack(head)
    if flag != b"FT" or fmt != PROTOBUF:
        raise ValueError(f"not an OpenD frame (flag {flag!r}, format {fmt})")
    return proto_id, serial, length


def response(proto_id: int, *, ret_type: int = 0, message: str = "") -> Any:
    """An empty Response of ``proto_id`` with its result set (-1 and ``message`` for a refusal)."""
    answer = module_of(proto_id).Response()
    answer.retType = ret_type
    if message:
        answer.retMsg = message
    return answer
