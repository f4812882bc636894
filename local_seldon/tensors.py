"""Tensors as the gateway carries them between steps: datatype, shape and the Open Inference Protocol's raw bytes.

A router's output becomes an arm's input without its numbers ever being decoded: gRPC messages with
``raw_*_contents`` are copied as bytes, and numbers are decoded only at the edges (typed gRPC contents, REST JSON)
or where the gateway needs them (a side step's batch).

Raw bytes are little-endian, row-major; a BYTES tensor is its items, each preceded by its length as 4 bytes
(the protocol's raw format, as MLServer and Triton write it).

>>> t = Tensor.from_array(np.array([[1.5, 2.0]], dtype=np.float32))
>>> t.datatype, t.shape, t.array().tolist()
('FP32', (1, 2), [[1.5, 2.0]])
>>> Tensor.from_array(np.array([b"up", b"down"], dtype=object)).array().tolist()
[b'up', b'down']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.types import InferenceRequest

from seldon_market_ab.binary_data import Body
from seldon_market_ab.protocol_types import (
    CONTENTS,
    DTYPES,
    TensorError,
    Tensors,
    check_datatype,
    check_shape,
    datatype_of,
)
from seldon_market_ab.tensor_bytes import check_size, pack_bytes, unpack_bytes


@dataclass(slots=True)
class Tensor:
    datatype: str
    shape: tuple[int, ...]
    raw: bytes
    parameters: dict = field(default_factory=dict)  # name -> bool, int or str

    # numbers -------------------------------------------------------------------------------------------------

    def array(self) -> np.ndarray:
        if self.datatype == "BYTES":
            return np.array(unpack_bytes(self.raw), dtype=object).reshape(self.shape)
        return np.frombuffer(self.raw, dtype=DTYPES[self.datatype]).reshape(self.shape)

    @classmethod
    def from_array(cls, array: np.ndarray, datatype: str | None = None, parameters: dict | None = None) -> Tensor:
        array = np.asarray(array)
        datatype = datatype or datatype_of(array)
        if datatype == "BYTES":
            items = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()]
            return cls("BYTES", tuple(array.shape), pack_bytes(items), parameters or {})
        return cls(datatype, tuple(array.shape), np.ascontiguousarray(array, DTYPES[datatype]).tobytes(),
                   parameters or {})

    # gRPC ------------------------------------------------------------------------------------------------------

    @classmethod
    def from_pb(cls, tensor, raw: bytes | None) -> Tensor:
        """From an ``InferInputTensor`` or ``InferOutputTensor`` and its raw contents, if it has any."""
        shape = tuple(tensor.shape)
        check_datatype(f"tensor '{tensor.name}'", tensor.datatype)  # before its typed contents are looked for
        parameters = {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in tensor.parameters.items()
                      if v.WhichOneof("parameter_choice")}
        if raw is None:
            typed = getattr(tensor.contents, CONTENTS.get(tensor.datatype, "fp32_contents"))
            if tensor.datatype == "BYTES":
                raw = pack_bytes(list(typed))
            else:
                try:
                    raw = _numbers(list(typed), tensor.datatype).tobytes()
                except (ValueError, OverflowError) as error:
                    raise TensorError(f"tensor '{tensor.name}': {error}") from None
        check_size(f"tensor '{tensor.name}'", tensor.datatype, shape, raw)
        return cls(tensor.datatype, shape, bytes(raw), parameters)

    def fill_pb(self, tensor, name: str) -> None:
        """Name, datatype, shape and parameters into an ``InferInputTensor`` or ``InferOutputTensor``."""
        tensor.name, tensor.datatype = name, self.datatype
        tensor.shape.extend(self.shape)
        for key, value in self.parameters.items():
            if isinstance(value, bool):
                tensor.parameters[key].bool_param = value
            elif isinstance(value, int):
                tensor.parameters[key].int64_param = value
            else:  # the protocol's parameters are bool, int64 or string
                tensor.parameters[key].string_param = str(value)

    def fill_typed_contents(self, tensor) -> None:
        """The numbers as typed contents, for a client that sent typed contents (FP16 has none: raw only)."""
        values = self.array().ravel()
        getattr(tensor.contents, CONTENTS[self.datatype]).extend(values.tolist())

    # REST ------------------------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, request_input, raw: bytes | None = None) -> Tensor:
        """From a REST request's input (``mlserver.types.RequestInput``, already validated), or from its bytes when
        it came in the binary data extension (already checked against its shape)."""
        data = request_input.data.root if hasattr(request_input.data, "root") else request_input.data
        parameters = request_input.parameters.model_dump(exclude_none=True) if request_input.parameters else {}
        parameters = {k: v for k, v in parameters.items() if isinstance(v, (bool, int, str))}
        datatype, shape = str(getattr(request_input.datatype, "value", request_input.datatype)), request_input.shape
        if raw is not None:
            return cls(datatype, tuple(shape), raw, parameters)
        check_datatype(f"input '{request_input.name}'", datatype)
        check_shape(f"input '{request_input.name}'", shape)
        try:
            if datatype == "BYTES":
                flat = np.asarray(data, dtype=object).ravel()
                array = np.array([v.encode() if isinstance(v, str) else v for v in flat], dtype=object)
                return cls.from_array(array.reshape(shape), "BYTES", parameters)
            array = _numbers(data, datatype).reshape(shape)
        except (ValueError, TypeError, OverflowError) as error:
            raise TensorError(f"input '{request_input.name}': its data do not make a {datatype} tensor of shape "
                              f"{list(shape)}: {error}") from None
        return cls.from_array(array, datatype, parameters)

    def json(self, name: str, data: bool = True) -> dict:
        """The REST form; ``data=False`` leaves the numbers out (they travel as bytes after the JSON)."""
        out = {"name": name, "shape": list(self.shape), "datatype": self.datatype}
        if data:
            values = self.array().ravel().tolist()
            out["data"] = [v.decode(errors="replace") for v in values] if self.datatype == "BYTES" else values
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        return out


def rest_request(body: Body) -> tuple[str | None, Tensors[Tensor]]:
    """The id and input tensors of a REST request (JSON, or with the binary data extension); raises
    ``pydantic.ValidationError`` or TensorError."""
    inputs = body.request.get("inputs")
    for tensor in inputs if isinstance(inputs, list) else ():  # anything else is for validation to refuse
        if isinstance(tensor, dict) and isinstance(tensor.get("name"), str) and tensor["name"] in body.buffers:
            tensor["data"] = []  # its numbers are the bytes after the JSON, never decoded here
    payload = InferenceRequest.model_validate(body.request)
    return payload.id, {i.name: Tensor.from_json(i, body.buffers.get(i.name)) for i in payload.inputs}


def request_tensors(request: pb.ModelInferRequest) -> Tensors[Tensor]:
    return _tensors(request.inputs, request.raw_input_contents)


def response_tensors(response: pb.ModelInferResponse) -> Tensors[Tensor]:
    return _tensors(response.outputs, response.raw_output_contents)


def _tensors(tensors, raw_contents) -> Tensors[Tensor]:
    if raw_contents and len(raw_contents) != len(tensors):
        raise TensorError(f"{len(tensors)} tensors but {len(raw_contents)} raw contents; with raw contents, every "
                          "tensor takes one, in order")
    return {t.name: Tensor.from_pb(t, raw_contents[i] if raw_contents else None) for i, t in enumerate(tensors)}


def infer_request(model: str, tensors: Tensors[Tensor], request_id: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    for name, tensor in tensors.items():
        tensor.fill_pb(request.inputs.add(), name)
        request.raw_input_contents.append(tensor.raw)
    return request


def infer_response(tensors: Tensors[Tensor], request_id: str, raw: bool,
                   model_name: str = "") -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model_name, id=request_id)
    raw = raw or any(t.datatype == "FP16" for t in tensors.values())  # FP16 has no typed contents; raw is all or none
    for name, tensor in tensors.items():
        output = response.outputs.add()
        tensor.fill_pb(output, name)
        if raw:
            response.raw_output_contents.append(tensor.raw)
        else:
            tensor.fill_typed_contents(output)
    return response


def _numbers(values, datatype: str) -> np.ndarray:
    """``values`` as ``datatype``, refusing integers out of its range (numpy would wrap them round)."""
    dtype = np.dtype(DTYPES[datatype])
    if dtype.kind in "iu":
        exact = np.asarray(values)
        if exact.dtype.kind == "f":
            if not np.all(np.isfinite(exact)) or np.any(exact != np.round(exact)):
                raise ValueError(f"{datatype} takes whole numbers")
        elif exact.dtype.kind not in "iub":
            raise ValueError(f"{datatype} takes whole numbers")
        limits = np.iinfo(dtype)
        if exact.size and (exact.min() < limits.min or exact.max() > limits.max):
            raise ValueError(f"a value is outside {datatype}'s range {limits.min} to {limits.max}")
    return np.asarray(values, dtype=dtype)

