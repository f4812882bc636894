"""The Open Inference Protocol's binary data extension over REST: tensors as bytes after a JSON header.

The extension is Triton's, and KServe's SDK sends numpy data with it by default. A body is a JSON object followed by
the bytes of some of its tensors: the header ``Inference-Header-Content-Length`` gives the JSON's length, and a tensor
sent as bytes carries ``"parameters": {"binary_data_size": n}`` instead of ``data``; the bytes follow the JSON in the
order of the tensors. A client asks for binary outputs with ``"parameters": {"binary_data_output": true}`` on the
request, or ``"binary_data": true`` (or ``false``) on a requested output, which wins.

The bytes are laid out as gRPC's raw contents are (``tensor_bytes``).

>>> import numpy as np
>>> head = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}'
>>> body = read_request(head + np.array([1.5, 2.0], "<f4").tobytes(), str(len(head)))
>>> body.request["inputs"], body.buffers["x"]
([{'name': 'x', 'datatype': 'FP32', 'shape': [2], 'parameters': {}}], b'\\x00\\x00\\xc0?\\x00\\x00\\x00@')
>>> with_data(body)["inputs"][0]["data"]
[1.5, 2.0]
>>> read_request(head + b"\\x00" * 4, str(len(head)))
Traceback (most recent call last):
...
seldon_market_ab.protocol_types.TensorError: input 'x' has binary_data_size 8, but only 4 bytes are left after the \
JSON and the inputs before it
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .protocol_types import TensorError, Tensors
from .tensor_bytes import check_size, to_bytes, values

HEADER = "Inference-Header-Content-Length"


# the extension: requests ---------------------------------------------------------------------------------------

@dataclass
class Body:
    """A REST request: its JSON object, whose binary inputs carry no ``data``, and their bytes by input name."""

    request: dict
    buffers: Tensors[bytes] = field(default_factory=dict)


def read_request(body: bytes, header_length: str | None) -> Body:
    """Split a REST request body. Without the header the whole body is JSON (whatever its Content-Type says: the
    protocol does not require one). Raises TensorError naming what is wrong."""
    if header_length is None:
        return Body(_json_object(body, "the body"))
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise TensorError(f"header {HEADER}: {header_length!r} must be the length of the JSON at the start of the "
                          f"body, 1 to {len(body)}")
    request = _json_object(body[:length], f"the first {length} bytes of the body ({HEADER})")
    inputs = request.get("inputs")
    buffers, offset = {}, length
    for tensor in inputs if isinstance(inputs, list) else ():
        size = _binary_size(tensor, "input")
        if size is None:
            continue
        if "data" in tensor:
            raise TensorError(f"input '{tensor.get('name')}' has both data and binary_data_size; send one")
        raw = body[offset:offset + size]
        offset += size
        what = f"input '{tensor.get('name')}'"
        if len(raw) < size:
            raise TensorError(f"{what} has binary_data_size {size}, but only {len(raw)} bytes are left after the "
                              "JSON and the inputs before it")
        check_size(f"{what} (binary_data_size {size})", tensor.get("datatype"), tensor.get("shape"), raw)
        buffers[tensor["name"]] = raw
    if offset != len(body):
        raise TensorError(f"{len(body) - offset} bytes follow the JSON and the binary inputs it declares "
                          f"({sum(map(len, buffers.values()))} bytes); every byte must belong to an input")
    return Body(request, buffers)


def with_data(body: Body) -> dict:
    """The request as plain JSON: each binary input's bytes as its ``data`` list (what MLServer's REST server
    validates and its codecs decode)."""
    for tensor in body.request["inputs"] if body.buffers else ():
        raw = body.buffers.get(tensor.get("name")) if isinstance(tensor, dict) else None
        if raw is not None:
            tensor["data"] = values(raw, tensor["datatype"])
    return body.request


def request_error(errors: list[dict]) -> str:
    """The first of pydantic's validation errors of a request body, in words: where, and what was wrong."""
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    return f"{where or 'body'}: {first['msg']}"


def _json_object(text: bytes, what: str) -> dict:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise TensorError(f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise TensorError(f"{what} must be a JSON object (an inference request), got {type(value).__name__}")
    return value


def _binary_size(tensor, kind: str) -> int | None:
    """A tensor's ``binary_data_size``, taken out of its parameters (steps downstream must not see it)."""
    parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters.pop("binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise TensorError(f"{kind} '{tensor.get('name')}': binary_data_size {size!r} must be a non-negative integer")
    if not isinstance(tensor.get("name"), str):
        raise TensorError(f"a binary {kind} needs a name")
    return size


# the extension: responses --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BinaryOutputs:
    """Which outputs a request wants as bytes: ``binary_data_output`` for all, ``binary_data`` per output."""

    default: bool = False
    named: tuple[tuple[str, bool], ...] = ()

    def wants(self, name: str) -> bool:
        return dict(self.named).get(name, self.default)

    @property
    def any(self) -> bool:
        return self.default or any(binary for _, binary in self.named)

    @classmethod
    def of(cls, request: dict) -> BinaryOutputs:
        """Read from a request's JSON; TensorError for a flag that is not a boolean."""
        default = _flag(request.get("parameters"), "binary_data_output", "the request")
        named, outputs = [], request.get("outputs")
        for output in outputs if isinstance(outputs, list) else ():  # anything else is for validation to refuse
            if isinstance(output, dict) and isinstance(output.get("name"), str):
                flag = _flag(output.get("parameters"), "binary_data", f"requested output '{output['name']}'")
                if flag is not None:
                    named.append((output["name"], flag))
        return cls(bool(default), tuple(named))


def _flag(parameters, key: str, where: str) -> bool | None:
    if not isinstance(parameters, dict) or key not in parameters:
        return None
    if not isinstance(parameters[key], bool):
        raise TensorError(f"{where}: parameter {key} must be true or false, got {parameters[key]!r}")
    return parameters[key]


def write_response(response: dict, buffers: Tensors[bytes]) -> tuple[bytes, int | None]:
    """A response body whose outputs named in ``buffers`` travel as those bytes after the JSON, and the header's
    value (None when no output is binary: the body is then plain JSON)."""
    for output in response["outputs"] if buffers else ():
        raw = buffers.get(output["name"])
        if raw is not None:
            output.pop("data", None)
            output["parameters"] = {**(output.get("parameters") or {}), "binary_data_size": len(raw)}
    head = orjson.dumps(response)
    if not buffers:
        return head, None
    return b"".join([head, *(buffers[o["name"]] for o in response["outputs"] if o["name"] in buffers)]), len(head)


def binary_response(response: dict, wanted: BinaryOutputs) -> tuple[bytes, int | None]:
    """A JSON response (MLServer's) with the outputs ``wanted`` as bytes."""
    buffers = {o["name"]: to_bytes(o["data"], o["datatype"]) for o in response.get("outputs") or ()
               if wanted.wants(o["name"]) and "data" in o}
    return write_response(response, buffers)
