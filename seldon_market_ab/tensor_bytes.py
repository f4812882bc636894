"""Tensor bytes as the Open Inference Protocol carries them: gRPC's raw contents and the REST binary data extension.

Little-endian and row-major; a BYTES element is its length as 4 little-endian bytes, then its bytes.

>>> values(pack_bytes([b"up", b""]), "BYTES"), values(to_bytes([1.5, 2.0], "FP32"), "FP32")
([b'up', b''], [1.5, 2.0])
>>> check_size("input 'x'", "FP32", [3], b"\\x00" * 8)
Traceback (most recent call last):
...
seldon_market_ab.protocol_types.TensorError: input 'x' FP32 [3] needs 12 bytes, got 8
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .protocol_types import DTYPES, ITEM_SIZES, TensorError, check_datatype, check_shape


def pack_bytes(items: list[bytes]) -> bytes:
    """BYTES elements in the raw layout: each one's length as 4 little-endian bytes, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def unpack_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError("BYTES raw contents end inside a length prefix")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise TensorError("BYTES raw contents end inside an item")
        items.append(bytes(raw[offset:offset + size]))
        offset += size
    return items


def values(raw: bytes, datatype: str) -> list:
    """The elements of a tensor's bytes as a flat Python list (what MLServer's REST types hold)."""
    if datatype == "BYTES":
        return unpack_bytes(raw)
    return np.frombuffer(raw, dtype=DTYPES[datatype]).tolist()


def to_bytes(data, datatype: str) -> bytes:
    """A JSON tensor's ``data`` (flat or nested) as bytes; BYTES elements may be text or bytes."""
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).ravel().tolist()
        return pack_bytes([item.encode() if isinstance(item, str) else bytes(item) for item in flat])
    return np.ascontiguousarray(data, dtype=DTYPES[datatype]).tobytes()


def check_size(what: str, datatype: str, shape, raw: bytes) -> None:
    """Refuse bytes that do not hold exactly ``shape``'s elements of ``datatype``."""
    check_datatype(what, datatype)
    check_shape(what, shape)
    count = math.prod(shape)
    if datatype == "BYTES":
        found = len(unpack_bytes(raw))
        if found != count:
            raise TensorError(f"{what} BYTES {list(shape)} holds {count} elements, but its bytes hold {found}")
    elif len(raw) != count * ITEM_SIZES[datatype]:
        raise TensorError(f"{what} {datatype} {list(shape)} needs {count * ITEM_SIZES[datatype]} bytes, got "
                          f"{len(raw)}")
