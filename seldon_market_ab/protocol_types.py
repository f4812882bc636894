"""The Open Inference Protocol's types, in one place: its datatypes, what a shape may be, and ``Tensors``.

Every part that reads or writes tensors takes these from here (the runtimes' decoding, the patched MLServer
converter, the binary data extension, the client, the gateway), so that they agree on what the wire carries.

>>> datatype_of(np.zeros(2, np.float32)), datatype_of(np.array(["up"])), DTYPES["INT64"], ITEM_SIZES["FP16"]
('FP32', 'BYTES', dtype('int64'), 2)
>>> check_shape("input 'x'", [2, -1])
Traceback (most recent call last):
...
seldon_market_ab.protocol_types.TensorError: input 'x': shape [2, -1] has a negative dimension; a shape is a list \
of non-negative integers
"""

from __future__ import annotations

from functools import cache
from typing import TypeVar

import numpy as np

# datatype -> (numpy's little-endian code, its field of gRPC typed contents). BYTES has no numpy code (its elements
# vary in length) and FP16 no typed contents (it travels as raw contents only). MLServer's codecs use the same dtypes
# (tests/unit/test_mlserver_compat.py).
_TABLE = {"BOOL": ("?", "bool_contents"), "UINT8": ("<u1", "uint_contents"), "UINT16": ("<u2", "uint_contents"),
          "UINT32": ("<u4", "uint_contents"), "UINT64": ("<u8", "uint64_contents"), "INT8": ("<i1", "int_contents"),
          "INT16": ("<i2", "int_contents"), "INT32": ("<i4", "int_contents"), "INT64": ("<i8", "int64_contents"),
          "FP16": ("<f2", None), "FP32": ("<f4", "fp32_contents"), "FP64": ("<f8", "fp64_contents"),
          "BYTES": (None, "bytes_contents")}
DATATYPES = tuple(_TABLE)
DTYPES = {name: np.dtype(code) for name, (code, _) in _TABLE.items() if code}
ITEM_SIZES = {name: dtype.itemsize for name, dtype in DTYPES.items()}
CONTENTS = {name: contents for name, (_, contents) in _TABLE.items() if contents}
_DATATYPE_OF_DTYPE = {dtype: name for name, dtype in DTYPES.items()}

_Tensor = TypeVar("_Tensor")
# Tensors by name, each in the form its holder keeps it: Tensors[np.ndarray], Tensors[bytes] (the binary data
# extension's buffers), Tensors[Tensor] (the gateway's).
Tensors = dict[str, _Tensor]


class TensorError(ValueError):
    """Tensor data that do not match their datatype and shape, or a body that breaks the binary data extension: a
    client error, answered 400 / ``INVALID_ARGUMENT``."""


def datatype_of(array) -> str:
    """The datatype of a numpy array (strings and objects are BYTES); TensorError for a dtype the protocol lacks."""
    return _datatype_of_dtype(np.asarray(array).dtype)


@cache  # looked up for every output of every answer
def _datatype_of_dtype(dtype: np.dtype) -> str:
    if dtype.kind in "OSU":
        return "BYTES"
    name = _DATATYPE_OF_DTYPE.get(dtype.newbyteorder("<"))
    if name is None:
        raise TensorError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


def check_datatype(what: str, datatype) -> None:
    """Refuse a datatype the protocol does not have; ``what`` names the tensor (``input 'x'``)."""
    if datatype not in DATATYPES:
        raise TensorError(f"{what}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")


def check_shape(what: str, shape) -> None:
    """Refuse a shape that is not a list (or tuple) of non-negative integers; ``what`` names the tensor."""
    if not isinstance(shape, list | tuple) or not all(isinstance(d, int) for d in shape):
        problem = "is not a list of integers"
    elif any(d < 0 for d in shape):
        problem = "has a negative dimension"
    else:
        return
    shown = list(shape) if isinstance(shape, tuple) else shape
    raise TensorError(f"{what}: shape {shown!r} {problem}; a shape is a list of non-negative integers")
