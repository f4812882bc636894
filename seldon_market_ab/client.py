"""A small Open Inference Protocol client over gRPC and REST, built on MLServer's own types.

``InferenceClient.infer(target, inputs)`` is what an application calls through Seldon (or ``market-ab serve``): the
target goes in the ``seldon-model`` header (gRPC: call metadata), every request carries an id (``x-request-id`` and
the request's own id; a router's decision id), only UNAVAILABLE / 503 is retried (with the same id, which a router
answers with the same decision), each attempt has a deadline, gRPC tensors travel as raw contents, and TLS is one
argument. ``send_outcomes`` reports how answered requests turned out (the ``outcomes`` model). ``infer_grpc`` and
``infer_rest`` are the plain calls underneath.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import grpc
import numpy as np
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from .mlserver_compat import response_from_grpc
from .protocol_types import CONTENTS, DTYPES, Tensors, datatype_of
from .tensor_bytes import pack_bytes

ROUTE_HEADER = "x-seldon-route"


def decode_outputs(response: InferenceResponse) -> Tensors[np.ndarray | list]:
    """Output name -> numpy array (numbers) or list of str (BYTES)."""
    return {output.name: _decode_output(output) for output in response.outputs}


def _decode_output(output: ResponseOutput):
    if output.datatype == "BYTES":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in output.data.root]
    return NumpyCodec.decode_output(output)


def build_grpc_request(model: str, inputs: Tensors[np.ndarray], request_id: str | None = None,
                       raw: bool = True) -> pb.ModelInferRequest:
    """Raw tensor contents for every input (the fast path; the protocol allows raw contents only for all inputs or
    none) or typed ``*_contents``; NaN and Inf pass through as they are."""
    request = pb.ModelInferRequest(model_name=model, id=request_id or "")
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array)
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        items = [str(v).encode() for v in array.ravel()] if datatype == "BYTES" else None
        if raw:
            request.raw_input_contents.append(pack_bytes(items) if items is not None
                                              else np.ascontiguousarray(array, DTYPES[datatype]).tobytes())
        elif items is not None:
            tensor.contents.bytes_contents.extend(items)
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(array.ravel().tolist())
    return request


def build_request(inputs: Tensors[np.ndarray], request_id: str | None = None) -> InferenceRequest:
    """Numbers as numpy tensors, strings as BYTES ``[n]`` (what the routers' ids and the detector's dates are)."""
    return InferenceRequest(id=request_id, inputs=[
        StringCodec.encode_input(name, [str(v) for v in np.ravel(value)]) if datatype_of(value) == "BYTES"
        else NumpyCodec.encode_input(name, np.asarray(value)) for name, value in inputs.items()])


def json_body(inputs: Tensors[np.ndarray], request_id: str | None = None) -> bytes:
    """A REST request body (what ``build_request`` holds, as MLServer's REST server reads it)."""
    return json.dumps(build_request(inputs, request_id).model_dump(exclude_none=True), default=_text).encode()


def _text(value):
    """BYTES data in a JSON body: UTF-8 text (what MLServer's REST server decodes them from)."""
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class RestError(Exception):
    status: int
    message: str


@dataclass
class Answer:
    outputs: Tensors[np.ndarray | list]  # numbers as numpy arrays, BYTES as lists of str
    request_id: str
    route: str | None  # x-seldon-route: send it back to stick to the same experiment candidate
    attempts: int


class InferenceClient:
    def __init__(self, grpc_address: str | None = None, http_url: str | None = None, tls: bool = False,
                 root_certificates: bytes | None = None, retries: int = 2, backoff_seconds: float = 0.05):
        """``tls``: a TLS channel (gRPC) / https (REST), trusting ``root_certificates`` (PEM) or the system's.
        ``retries``: further attempts after UNAVAILABLE (gRPC) or 503 (REST), ``backoff_seconds`` doubling."""
        self.http_url = http_url
        self.retries, self.backoff_seconds = retries, backoff_seconds
        self.attempts = 0  # every attempt this client has made (retries included)
        if grpc_address and tls:
            self._channel = grpc.secure_channel(grpc_address, grpc.ssl_channel_credentials(root_certificates))
        else:
            self._channel = grpc.insecure_channel(grpc_address) if grpc_address else None
        self._stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(self._channel) if self._channel else None
        self._ssl = ssl.create_default_context(cadata=root_certificates.decode() if root_certificates else None) \
            if tls else None

    def infer(self, target: str, inputs: Tensors[np.ndarray], protocol: str = "grpc", request_id: str | None = None,
              route: str | None = None, timeout: float = 30.0) -> Answer:
        """Ask ``target`` (``<model>``, ``<name>.pipeline`` or ``<name>.experiment``) through Seldon's routing."""
        request_id = request_id or uuid.uuid4().hex
        headers = {"seldon-model": target, "x-request-id": request_id, **({ROUTE_HEADER: route} if route else {})}
        name = target.rsplit(".", 1)[0] if target.endswith((".pipeline", ".experiment")) else target
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                if protocol == "grpc":
                    response, call = self._stub.ModelInfer.with_call(
                        build_grpc_request(name, inputs, request_id), metadata=tuple(headers.items()), timeout=timeout)
                    received = dict(call.initial_metadata())
                    return Answer(decode_outputs(response_from_grpc(response)), request_id,
                                  received.get(ROUTE_HEADER), attempt + 1)
                outputs, received = self._post(name, json_body(inputs, request_id), headers, timeout)
                return Answer(outputs, request_id, received.get(ROUTE_HEADER), attempt + 1)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
            except RestError as error:
                if error.status != 503 or attempt == self.retries:
                    raise
            except urllib.error.URLError:  # no connection: REST's UNAVAILABLE
                if attempt == self.retries:
                    raise
            time.sleep(self.backoff_seconds * 2**attempt)
        raise AssertionError("unreachable")

    def send_outcomes(self, request_ids: list[str], models: list[str], correct: list[bool],
                      returns: list[float] | None = None, protocol: str = "grpc", target: str = "outcomes",
                      timeout: float = 30.0) -> list[str]:
        """Tell the outcomes model how answered requests turned out: for each request id, the served model that
        answered it (an experiment's candidate as ``x-seldon-route`` names it, a router pipeline's arm), whether its
        direction was right, and optionally the strategy's return. One status per row: ``recorded``, ``duplicate``,
        ``conflict`` or ``unknown_model``. Safe to retry: a repeated id with the same values counts once."""
        inputs = {"request_id": np.array(request_ids, dtype=object), "model": np.array(models, dtype=object),
                  "correct": np.asarray(correct, dtype=np.int32)}
        if returns is not None:
            inputs["return"] = np.asarray(returns, dtype=np.float64)
        return list(self.infer(target, inputs, protocol, timeout=timeout).outputs["status"])

    def _post(self, model: str, body: bytes, headers: dict, timeout: float) -> tuple[dict, dict]:
        request = urllib.request.Request(f"{self.http_url}/v2/models/{model}/infer", data=body,
                                         headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl) as response:
                answer = InferenceResponse.model_validate_json(response.read())
                return decode_outputs(answer), {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            raise RestError(error.code, error.read().decode(errors="replace")) from None

    def infer_grpc(self, model: str, inputs: Tensors[np.ndarray], request_id: str | None = None,
                   raw: bool = True, metadata: tuple = (), timeout: float = 30.0) -> Tensors[np.ndarray | list]:
        request = build_grpc_request(model, inputs, request_id, raw)
        response = self._stub.ModelInfer(request, metadata=metadata, timeout=timeout)
        return decode_outputs(response_from_grpc(response))

    def infer_rest(self, model: str, inputs: Tensors[np.ndarray] | None = None, request_id: str | None = None,
                   body: bytes | dict | None = None, timeout: float = 30.0,
                   headers: dict | None = None) -> Tensors[np.ndarray | list]:
        """POST an inference request; ``body`` sends a hand-made payload instead of ``inputs``; ``headers`` such as
        ``{"seldon-model": "mab.pipeline"}`` go with it."""
        if body is None:
            body = json_body(inputs, request_id)
        data = body if isinstance(body, bytes) else json.dumps(body, default=_text).encode()
        request = urllib.request.Request(f"{self.http_url}/v2/models/{model}/infer", data=data,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return decode_outputs(InferenceResponse.model_validate_json(response.read()))
        except urllib.error.HTTPError as error:
            raise RestError(error.code, error.read().decode(errors="replace")) from None

    def close(self) -> None:
        if self._channel:
            self._channel.close()
