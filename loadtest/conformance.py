"""Conformance with Open Inference Protocol clients nobody here wrote: NVIDIA's tritonclient (HTTP, gRPC) and
KServe's SDK (REST, gRPC), against a plain ``mlserver start`` of the model repository or ``market-ab serve``.

Runs in ``.venv-clients`` (``make clients``), never in the serving venv, and imports only numpy and the client under
test: our own code must not soften what a stranger's client meets. One client per process, because kserve and
tritonclient.grpc each register the protocol's messages (package ``inference``) in protobuf's default pool under
different file names, and whichever is imported second fails ("duplicate symbol 'inference.ServerLiveRequest'"):
each client class imports its library when it is built.

    .venv-clients/bin/python -I loadtest/conformance.py --client kserve.rest --rest http://127.0.0.1:9000 \\
        --grpc 127.0.0.1:9001 --seldon --inputs windows.npz --lstms baseline,enhanced --routers thompson-router \\
        --detectors drift-detector --pipelines mab,contextual --experiment ab-test --candidates baseline,enhanced \\
        --pin baseline --feedback-router thompson-router --feedback-pipeline mab

``--inputs`` is an ``.npz`` of real market windows: ``ohlcv`` [1, rows, 5] (rows >= the LSTMs' min_window),
``drift`` [window_size, rows, 5] (one batch the drift detector judges as one window), ``short`` (too few rows),
``negative`` (a negative price) and ``nan`` (a NaN price), all FP32.

Prints one JSON line per check, never stopping at a failure: ``{"client": ..., "call": ..., "ok": true | false |
null, "detail": ...}``; ``ok`` null means the client has no way to make that call (the detail says why). An LSTM's
answer also carries ``"value"``: its probability, which the caller compares across clients. Exits 0 once every check
ran, whatever they found: the caller judges.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLIENTS = ("tritonclient.http", "tritonclient.grpc", "kserve.rest", "kserve.grpc")
SELDON_MODEL, ROUTE = "seldon-model", "x-seldon-route"
DATATYPES = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "object": "BYTES"}
STICKY_CALLS = 20  # a 70% candidate twenty times in a row by chance: 0.08% (so stickiness, not luck)
UNKNOWN_MODEL = "no-such-model"
DETAIL_CHARS = 1200
LSTM_OUTPUTS = ("probability", "direction", "model")
PROTOCOL_DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                      "FP64", "BYTES")
# what the metadata must declare, by role (the wire contract; docs/clients.md): {"inputs"/"outputs": {name: datatype}}
DECLARED = {
    "lstm": {"inputs": {"ohlcv": "FP32"}, "outputs": {"probability": "FP32", "direction": "INT32", "model": "BYTES"}},
    "router": {"inputs": {"ohlcv": "FP32", "decision_id": "BYTES", "reward": "FP64"},
               "outputs": {"arm": "BYTES", "propensity": "FP64", "decision_id": "BYTES", "status": "BYTES"}},
    "detector": {"inputs": {"ohlcv": "FP32"}, "outputs": {"is_drift": "INT32", "window_rows": "INT32"}},
}


class Failure(Exception):
    """The server (with this client) did not do what the protocol, or our wire contract, says."""


class NotApplicable(Exception):
    """The client has no way to make this call; the message says why."""


class ServerError(Exception):
    """The server answered with an error: ``status`` is the HTTP code ("400") or the gRPC code name
    ("INVALID_ARGUMENT"); ``protocol_body`` is False when a REST error body was not the protocol's
    ``{"error": ...}``."""

    def __init__(self, status: str, message: str, protocol_body: bool = True):
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.protocol_body = str(status), message, protocol_body


@dataclass(frozen=True)
class Encoding:
    """How a request's inputs travel (REST: ``json`` or ``binary``, the binary tensor extension; gRPC: ``raw``
    contents or typed ``contents``) and which outputs it asks for (REST: ``json`` or ``binary``; gRPC:
    ``requested``; None: none named, the server sends every output)."""

    inputs: str
    outputs: str | None = None

    def __str__(self) -> str:
        return f"{self.inputs} in, " + (f"{self.outputs} out" if self.outputs else "no outputs requested")


@dataclass
class Answer:
    outputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    id: str
    headers: dict[str, str] | None  # None: the client gives no access to the response's headers
    binary: set[str]  # outputs that came as the binary tensor extension (REST)


def datatype(array: np.ndarray) -> str:
    return DATATYPES[array.dtype.name]


def texts(array: np.ndarray) -> list[str]:
    """A BYTES output as strings, whether the client decoded it to ``bytes`` or ``str``."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(array).ravel().tolist()]


# clients --------------------------------------------------------------------------------------------------------

class TritonHTTP:
    name, transport = "tritonclient.http", "rest"
    encodings = (Encoding("json", "json"), Encoding("binary", "binary"), Encoding("json", "binary"),
                 Encoding("binary", "json"), Encoding("json"), Encoding("binary"))
    no_headers = ("tritonclient.http's InferResult keeps only the response body; the client exposes no response "
                  "header")
    no_metadata = ""

    def __init__(self, rest_url: str, _grpc_address: str):
        import tritonclient.http as http
        from tritonclient.utils import InferenceServerException

        self.http, self.error = http, InferenceServerException
        self.client = http.InferenceServerClient(rest_url.split("://", 1)[-1], connection_timeout=60.0,
                                                 network_timeout=120.0)

    def binary_expected(self, encoding: Encoding) -> bool | None:
        """tritonclient asks ``binary_data_output: true`` when no output is named."""
        return encoding.outputs != "json"

    def live(self) -> bool:
        return self.client.is_server_live()

    def ready(self) -> bool:
        return self.client.is_server_ready()

    def model_ready(self, model: str, headers: dict) -> bool:
        return self.client.is_model_ready(model, headers=headers or None)

    def metadata(self, model: str, headers: dict) -> dict:
        try:
            return self.client.get_model_metadata(model, headers=headers or None)
        except self.error as error:
            raise self._server_error(error) from None

    def infer(self, model: str, inputs: dict[str, np.ndarray], headers: dict, encoding: Encoding,
              request_id: str = "", outputs: tuple[str, ...] = ()) -> Answer:
        tensors = []
        for name, array in inputs.items():
            tensor = self.http.InferInput(name, list(array.shape), datatype(array))
            tensor.set_data_from_numpy(array, binary_data=encoding.inputs == "binary")
            tensors.append(tensor)
        requested = [self.http.InferRequestedOutput(name, binary_data=encoding.outputs == "binary")
                     for name in outputs] if encoding.outputs else None
        try:
            result = self.client.infer(model, tensors, outputs=requested, request_id=request_id,
                                       headers=dict(headers) or None)
        except self.error as error:
            raise self._server_error(error) from None
        body = result.get_response()
        described = body.get("outputs", [])
        return Answer({o["name"]: result.as_numpy(o["name"]) for o in described},
                      {o["name"]: o["datatype"] for o in described}, body.get("id", ""), None,
                      {o["name"] for o in described if "binary_data_size" in (o.get("parameters") or {})})

    def _server_error(self, error) -> ServerError:
        message = error.message() or ""
        unreadable = message.startswith(("an exception occurred in the client while decoding",
                                         "client received an empty response"))
        return ServerError(error.status() or "no status", message, protocol_body=not unreadable)


class TritonGRPC:
    name, transport = "tritonclient.grpc", "grpc"
    encodings = (Encoding("raw"), Encoding("raw", "requested"))
    no_headers = ("tritonclient.grpc's infer returns the ModelInferResponse message only; the client exposes no "
                  "initial metadata")
    no_metadata = ""

    def __init__(self, _rest_url: str, grpc_address: str):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self.grpcclient, self.error = grpcclient, InferenceServerException
        self.client = grpcclient.InferenceServerClient(grpc_address)

    def binary_expected(self, _encoding: Encoding) -> bool | None:
        return None

    def live(self) -> bool:
        return self._call(self.client.is_server_live)

    def ready(self) -> bool:
        return self._call(self.client.is_server_ready)

    def model_ready(self, model: str, headers: dict) -> bool:
        return self._call(self.client.is_model_ready, model, headers=headers or None)

    def metadata(self, model: str, headers: dict) -> dict:
        found = self._call(self.client.get_model_metadata, model, headers=headers or None)
        return {"name": found.name, "versions": list(found.versions), "platform": found.platform,
                **{kind: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                          for t in getattr(found, kind)] for kind in ("inputs", "outputs")}}

    def infer(self, model: str, inputs: dict[str, np.ndarray], headers: dict, encoding: Encoding,
              request_id: str = "", outputs: tuple[str, ...] = ()) -> Answer:
        tensors = []
        for name, array in inputs.items():
            tensor = self.grpcclient.InferInput(name, list(array.shape), datatype(array))
            tensor.set_data_from_numpy(array)  # always raw_input_contents
            tensors.append(tensor)
        requested = [self.grpcclient.InferRequestedOutput(name) for name in outputs] if encoding.outputs else None
        result = self._call(self.client.infer, model, tensors, outputs=requested, request_id=request_id,
                            headers=dict(headers) or None, client_timeout=120.0)
        response = result.get_response()
        return Answer({o.name: result.as_numpy(o.name) for o in response.outputs},
                      {o.name: o.datatype for o in response.outputs}, response.id, None, set())

    def _call(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except self.error as error:
            raise ServerError((error.status() or "no status").removeprefix("StatusCode."), error.message()) from None


def quiet_kserve() -> None:
    """kserve logs every failed call with its traceback; the bad-input checks fail calls on purpose, and a real
    problem's traceback should not drown in those on stderr."""
    logging.getLogger("kserve").setLevel(logging.CRITICAL)


class KServeREST:
    name, transport = "kserve.rest", "rest"
    encodings = (Encoding("binary"), Encoding("json"), Encoding("binary", "binary"), Encoding("json", "json"),
                 Encoding("json", "binary"))
    no_headers = ""
    no_metadata = "kserve 0.21.0's InferenceRESTClient has no model-metadata call (infer, explain, the health calls)"

    def __init__(self, rest_url: str, _grpc_address: str):
        import kserve
        from kserve.protocol.infer_type import RequestedOutput

        quiet_kserve()

        self.kserve, self.requested_output, self.url = kserve, RequestedOutput, rest_url
        self.loop = asyncio.new_event_loop()
        self.client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", timeout=120))

    def binary_expected(self, encoding: Encoding) -> bool | None:
        return encoding.outputs == "binary"

    def live(self) -> bool:
        return self._health(self.client.is_server_live(self.url), "is_server_live", "live")

    def ready(self) -> bool:
        return self._health(self.client.is_server_ready(self.url), "is_server_ready", "ready")

    def model_ready(self, model: str, headers: dict) -> bool:
        return self._run(self.client.is_model_ready(self.url, model, headers=dict(headers) or None))


    def infer(self, model: str, inputs: dict[str, np.ndarray], headers: dict, encoding: Encoding,
              request_id: str = "", outputs: tuple[str, ...] = ()) -> Answer:
        tensors = []
        for name, array in inputs.items():
            tensor = self.kserve.InferInput(name, list(array.shape), datatype(array))
            tensor.set_data_from_numpy(array, binary_data=encoding.inputs == "binary")
            tensors.append(tensor)
        requested = [self.requested_output(name, {"binary_data": encoding.outputs == "binary"})
                     for name in outputs] if encoding.outputs else None
        request = self.kserve.InferRequest(model, tensors, request_id=request_id or None, request_outputs=requested)
        received: dict[str, str] = {}
        response = self._run(self.client.infer(self.url, request, model_name=model, headers=dict(headers),
                                               response_headers=received))
        received = {key.lower(): value for key, value in received.items()}
        binary = {o.name for o in response.outputs} if "inference-header-content-length" in received else set()
        return Answer({o.name: o.as_numpy() for o in response.outputs}, {o.name: o.datatype for o in response.outputs},
                      response.id or "", received, binary)

    def _health(self, call, method: str, key: str) -> bool:
        try:
            return self._run(call)
        except json.JSONDecodeError:
            raise NotApplicable(f"kserve 0.21.0's {method} reads a JSON body ({{'{key}': true}}); the server answered "
                                "2xx with a body that is not JSON (the protocol lets a health answer's body be "
                                "empty: its status is the answer)") from None

    def _run(self, call):
        try:
            return self.loop.run_until_complete(call)
        except Exception as error:
            response = getattr(error, "response", None)  # httpx.HTTPStatusError, without importing httpx
            if response is None or not hasattr(response, "status_code"):
                raise
            try:
                message, protocol_body = response.json()["error"], True
            except Exception:
                message, protocol_body = response.text[:300], False
            raise ServerError(str(response.status_code), str(message), protocol_body) from None


class KServeGRPC:
    name, transport = "kserve.grpc", "grpc"
    encodings = (Encoding("raw"), Encoding("contents"))
    no_headers = ("kserve 0.21.0's InferenceGRPCClient.infer awaits the call and returns the message only; the "
                  "client exposes no initial metadata")
    no_metadata = "kserve 0.21.0's InferenceGRPCClient has no model-metadata call (infer and the health calls only)"

    def __init__(self, _rest_url: str, grpc_address: str):
        import kserve

        quiet_kserve()
        self.kserve = kserve
        self.loop = asyncio.new_event_loop()

        async def connect():  # grpc.aio binds its channel to the running loop
            return kserve.InferenceGRPCClient(grpc_address, timeout=120)

        self.client = self.loop.run_until_complete(connect())

    def binary_expected(self, _encoding: Encoding) -> bool | None:
        return None

    def live(self) -> bool:
        return self._run(self.client.is_server_live())

    def ready(self) -> bool:
        return self._run(self.client.is_server_ready())

    def model_ready(self, model: str, headers: dict) -> bool:
        return self._run(self.client.is_model_ready(model, headers=list(headers.items()) or None))


    def infer(self, model: str, inputs: dict[str, np.ndarray], headers: dict, encoding: Encoding,
              request_id: str = "", outputs: tuple[str, ...] = ()) -> Answer:
        tensors = []
        for name, array in inputs.items():
            tensor = self.kserve.InferInput(name, list(array.shape), datatype(array))
            tensor.set_data_from_numpy(array, binary_data=encoding.inputs == "raw")
            tensors.append(tensor)
        request = self.kserve.InferRequest(model, tensors, request_id=request_id or None)
        response = self._run(self.client.infer(request, headers=list(headers.items()) or None))
        return Answer({o.name: o.as_numpy() for o in response.outputs}, {o.name: o.datatype for o in response.outputs},
                      response.id or "", None, set())

    def _run(self, call):
        try:
            return self.loop.run_until_complete(call)
        except Exception as error:
            if not callable(getattr(error, "code", None)):  # grpc.aio.AioRpcError, without importing grpc
                raise
            raise ServerError(error.code().name, error.details() or "") from None


CLIENT_TYPES = {c.name: c for c in (TritonHTTP, TritonGRPC, KServeREST, KServeGRPC)}


# checks ---------------------------------------------------------------------------------------------------------

class Report:
    """Runs each check, catching everything, and prints its JSON line at once (a crash later loses nothing)."""

    def __init__(self, client: str):
        self.client = client

    def check(self, call: str, run: Callable[[], object]) -> None:
        value = None
        try:
            result = run()
            ok, detail = True, result
            if isinstance(result, tuple):
                detail, value = result
        except NotApplicable as reason:
            ok, detail = None, str(reason)
        except Failure as failure:
            ok, detail = False, str(failure)
        except ServerError as error:
            ok, detail = False, f"the server answered {error}"
        except Exception as error:  # the client itself failed: a finding too
            ok, detail = False, f"{type(error).__module__}.{type(error).__name__}: {error}"
        line = {"client": self.client, "call": call, "ok": ok, "detail": str(detail or "")[:DETAIL_CHARS]}
        if value is not None:
            line["value"] = value
        print(json.dumps(line), flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def expect_tensor(answer: Answer, name: str, datatype_: str, shape: tuple | None = None) -> np.ndarray:
    expect(name in answer.outputs, f"no output '{name}'; got {sorted(answer.outputs)}")
    expect(answer.datatypes[name] == datatype_, f"output '{name}' is {answer.datatypes[name]}; expected {datatype_}")
    array = answer.outputs[name]
    expect(shape is None or tuple(array.shape) == shape, f"output '{name}' has shape {list(array.shape)}; "
                                                         f"expected {list(shape or ())}")
    return array


def expect_encoding(client, answer: Answer, encoding: Encoding, asked: tuple[str, ...]) -> None:
    """Outputs asked for as binary come back as the binary tensor extension, and outputs asked for as JSON do not.
    With no output named, that is every output; with some named, only those (the protocol leaves any other output
    the server adds to ``binary_data_output``, which no client here sets alongside named outputs)."""
    wanted = client.binary_expected(encoding)
    judged = set(asked) if encoding.outputs else set(answer.outputs)
    if wanted is True:
        expect(judged <= answer.binary, f"binary outputs were asked for ({encoding}) but "
                                        f"{sorted(judged - answer.binary)} came as JSON")
    elif wanted is False:
        expect(not judged & answer.binary, f"JSON outputs were asked for ({encoding}) but "
                                           f"{sorted(judged & answer.binary)} came binary")


def lstm_answer(answer: Answer, models: set[str]) -> tuple[str, float]:
    """probability FP32 [1] in [0, 1], direction INT32 [1] in {0, 1}, model BYTES [1] one of ``name:1``."""
    probability = expect_tensor(answer, "probability", "FP32", (1,))
    direction = expect_tensor(answer, "direction", "INT32", (1,))
    model = texts(expect_tensor(answer, "model", "BYTES", (1,)))
    expect(0.0 <= float(probability[0]) <= 1.0, f"probability {probability[0]} is not in [0, 1]")
    expect(int(direction[0]) in (0, 1), f"direction {direction[0]} is not 0 or 1")
    expect(model[0] in models, f"model output {model}; expected one of {sorted(models)}")
    return f"probability {float(probability[0]):.6f}, direction {int(direction[0])}, model {model[0]}", \
        float(probability[0])


def router_answer(answer: Answer, window: np.ndarray, arm_tensor: bool, request_id: str = "") -> str:
    """``arm`` BYTES [1], ``propensity`` FP64 [1] in (0, 1], ``decision_id`` BYTES [1] (the request id when one was
    sent) and, when every output was asked for, a tensor named after the arm carrying the window unchanged."""
    arm = texts(expect_tensor(answer, "arm", "BYTES", (1,)))[0]
    propensity = float(expect_tensor(answer, "propensity", "FP64", (1,))[0])
    decision = texts(expect_tensor(answer, "decision_id", "BYTES", (1,)))[0]
    expect(0.0 < propensity <= 1.0, f"propensity {propensity} is not in (0, 1]")
    expect(not request_id or decision == request_id, f"decision_id {decision!r}; expected the request id "
                                                     f"{request_id!r}")
    if arm_tensor:
        routed = expect_tensor(answer, arm, "FP32", tuple(window.shape))
        expect(np.array_equal(routed, window), f"tensor '{arm}' does not carry the request's window unchanged")
    return f"arm {arm}, propensity {propensity:.4f}, decision_id {decision}"


def expect_error(client, call: Callable[[], object], kind: str) -> str:
    """The call fails as a client error: REST 400 (404 for ``unknown``) with the protocol's ``{"error": ...}`` body,
    gRPC INVALID_ARGUMENT (NOT_FOUND)."""
    wanted = {("rest", "bad"): "400", ("rest", "unknown"): "404", ("grpc", "bad"): "INVALID_ARGUMENT",
              ("grpc", "unknown"): "NOT_FOUND"}[client.transport, kind]
    try:
        call()
    except ServerError as error:
        expect(error.status == wanted, f"answered {error.status} ({error.message[:300]}); expected {wanted}")
        expect(error.protocol_body, f"the {error.status} body is not the protocol's {{\"error\": ...}}: "
                                    f"{error.message[:300]}")
        expect(bool(error.message.strip()), "the error says nothing")
        return f"{error.status}: {error.message}"
    raise Failure(f"answered without an error; expected {wanted}")


def not_applicable(reason: str):
    raise NotApplicable(reason)


def route_value(model: str) -> str:
    """Seldon's ``x-seldon-route`` value for version 1 of a model (``:enhanced_1:``)."""
    return f":{model}_1:"


class Conformance:
    """Every check for one client against one server, in an order that lets later checks reuse earlier answers
    (the pipelines' probabilities are compared with the arms' own)."""

    def __init__(self, client, args, windows: dict[str, np.ndarray]):
        self.client, self.args, self.windows = client, args, windows
        self.report = Report(client.name)
        self.window = windows["ohlcv"]
        self.lstms = set(args.lstms)
        # pipelines, experiment, feedback and errors: the encoding least likely to fail for its own sake (the
        # encodings themselves have their checks), so that a failure there is about routing, ids or errors
        self.plain = Encoding("json", "json") if client.transport == "rest" else Encoding("raw")
        self.probabilities: dict[str, dict[str, float]] = {}

    def headers(self, model: str) -> dict[str, str]:
        """``market-ab serve`` routes by ``seldon-model``; a model that is an experiment's default is reached
        through the experiment, so calls meant for it name it in ``x-seldon-route``, as a Seldon client would."""
        if not self.args.seldon:
            return {}
        return {SELDON_MODEL: model, **({ROUTE: route_value(model)} if model in self.args.pin else {})}

    def run(self) -> None:
        self.health()
        self.metadata()
        self.inference()
        if self.args.seldon:
            self.pipelines()
            self.experiment()
        self.feedback()
        self.bad_input()

    def health(self) -> None:
        check, client = self.report.check, self.client
        check("server live", lambda: expect(client.live() is True, "not live") or "live")
        check("server ready", lambda: expect(client.ready() is True, "not ready") or "ready")
        for model in self.args.models:
            check(f"model ready {model}", lambda m=model: expect(
                client.model_ready(m, self.headers(m)) is True, "not ready") or "ready")

    def metadata(self) -> None:
        if self.client.no_metadata:
            self.report.check("metadata of every model", lambda: not_applicable(self.client.no_metadata))
            return
        for model in self.args.models:
            self.report.check(f"metadata {model}", lambda m=model: self._metadata(m))

    def _metadata(self, model: str) -> str:
        """Name, version "1", and inputs and outputs each with a name, a protocol datatype and a shape, including
        the wire contract's tensors; every problem at once."""
        found = self.client.metadata(model, self.headers(model))
        problems = []
        if found.get("name") != model:
            problems.append(f"name {found.get('name')!r}, expected {model!r}")
        if "1" not in (found.get("versions") or []):
            problems.append(f"versions {found.get('versions')}, expected to hold '1'")
        role = "lstm" if model in self.lstms else "router" if model in self.args.routers else "detector"
        for kind in ("inputs", "outputs"):
            tensors = found.get(kind) or []
            problems += [f"{kind[:-1]} {t} lacks a name, a protocol datatype or a shape" for t in tensors
                         if not (t.get("name") and t.get("datatype") in PROTOCOL_DATATYPES and
                                 isinstance(t.get("shape"), list) and t["shape"])]
            declared = {t.get("name"): t.get("datatype") for t in tensors}
            missing = {n: d for n, d in DECLARED[role][kind].items() if declared.get(n) != d}
            if missing:
                problems.append(f"{kind} lack {missing} (the wire contract's); declared {declared or 'none'}")
        expect(not problems, "; ".join(problems))
        return "; ".join(f"{kind}: " + ", ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in found[kind])
                         for kind in ("inputs", "outputs"))

    def inference(self) -> None:
        check = self.report.check
        for model in self.args.lstms:
            for encoding in self.client.encodings:
                check(f"infer {model} ({encoding})", lambda m=model, e=encoding: self._lstm(m, e))
            check(f"answers agree across encodings on {model}", lambda m=model: self._agree(m))
        for router in self.args.routers:
            for encoding in self.client.encodings:
                check(f"infer {router} ({encoding})", lambda r=router, e=encoding: self._router(r, e))
        for detector in self.args.detectors:
            for encoding in self.client.encodings:
                check(f"infer {detector} ({encoding})", lambda d=detector, e=encoding: self._detector(d, e))

    def _lstm(self, model: str, encoding: Encoding) -> tuple[str, float]:
        answer = self.client.infer(model, {"ohlcv": self.window}, self.headers(model), encoding,
                                   outputs=LSTM_OUTPUTS)
        detail, probability = lstm_answer(answer, {f"{model}:1"})
        expect_encoding(self.client, answer, encoding, LSTM_OUTPUTS)
        self.probabilities.setdefault(model, {})[str(encoding)] = probability
        return detail, probability

    def _agree(self, model: str) -> str:
        """The same window gives the same probability whatever the encoding (JSON, binary, raw or typed)."""
        seen = self.probabilities.get(model, {})
        expect(len(seen) >= 2, f"fewer than two encodings answered ({sorted(seen)}): nothing to compare")
        values = np.array(list(seen.values()))
        expect(np.allclose(values, values[0], rtol=1e-6, atol=1e-7), f"probabilities differ: {seen}")
        return f"{len(seen)} encodings, probability {values[0]:.6f}"

    def _router(self, router: str, encoding: Encoding) -> str:
        asked = ("arm", "propensity", "decision_id")
        request_id = self.new_id()
        answer = self.client.infer(router, {"ohlcv": self.window}, self.headers(router), encoding,
                                   request_id=request_id, outputs=asked)
        detail = router_answer(answer, self.window, arm_tensor=encoding.outputs is None, request_id=request_id)
        expect_encoding(self.client, answer, encoding, asked)
        return detail

    def _detector(self, detector: str, encoding: Encoding) -> str:
        batch, asked = self.windows["drift"], ("is_drift", "window_rows")
        answer = self.client.infer(detector, {"ohlcv": batch}, self.headers(detector), encoding, outputs=asked)
        is_drift = int(expect_tensor(answer, "is_drift", "INT32", (1,))[0])
        rows = int(expect_tensor(answer, "window_rows", "INT32", (1,))[0])
        expect(is_drift in (0, 1), f"is_drift {is_drift} is not 0 or 1")
        expect(rows == len(batch), f"window_rows {rows}; the request held {len(batch)} windows")
        expect_encoding(self.client, answer, encoding, asked)
        return f"is_drift {is_drift}, window_rows {rows}"

    def pipelines(self) -> None:
        for pipeline in self.args.pipelines:
            for encoding in (e for e in self.client.encodings if e.outputs is None):
                self.report.check(f"infer {pipeline}.pipeline ({encoding})",
                                  lambda p=pipeline, e=encoding: self._pipeline(p, e))

    def _pipeline(self, pipeline: str, encoding: Encoding) -> tuple[str, float]:
        """The router's arm answers, as that model answers directly; the model in the URL is the pipeline's name,
        the header decides."""
        answer = self.client.infer(pipeline, {"ohlcv": self.window}, {SELDON_MODEL: f"{pipeline}.pipeline"},
                                   encoding)
        detail, probability = lstm_answer(answer, {f"{m}:1" for m in self.lstms})
        expect_encoding(self.client, answer, encoding, LSTM_OUTPUTS)
        arm = texts(answer.outputs["model"])[0].rsplit(":", 1)[0]
        direct = list(self.probabilities.get(arm, {}).values())
        expect(not direct or np.isclose(probability, direct[0], rtol=1e-6, atol=1e-7),
               f"probability {probability} through the pipeline, {direct[0]} from {arm} directly")
        return detail, probability

    def experiment(self) -> None:
        if not self.args.experiment:
            return
        check, target = self.report.check, f"{self.args.experiment}.experiment"
        check(f"x-seldon-route in the answer of {target}", self._route_header)
        check(f"sticky {target}: the answer's x-seldon-route sent back {STICKY_CALLS} times", self._sticky_echo)
        for candidate in self.args.candidates:
            check(f"sticky {target}: x-seldon-route {route_value(candidate)} sent {STICKY_CALLS} times",
                  lambda c=candidate: self._sticky(c))

    def _experiment_call(self, route: str | None = None) -> Answer:
        headers = {SELDON_MODEL: f"{self.args.experiment}.experiment", **({ROUTE: route} if route else {})}
        return self.client.infer(self.args.experiment, {"ohlcv": self.window}, headers, self.plain,
                                 outputs=LSTM_OUTPUTS)

    def _route_header(self) -> str:
        if self.client.no_headers:
            raise NotApplicable(self.client.no_headers)
        answer = self._experiment_call()
        route = answer.headers.get(ROUTE)
        expect(route is not None, f"no {ROUTE} response header; got {sorted(answer.headers)}")
        expect(route in {route_value(c) for c in self.args.candidates},
               f"{ROUTE} {route!r} names no candidate ({', '.join(route_value(c) for c in self.args.candidates)})")
        detail, _ = lstm_answer(answer, {f"{c}:1" for c in self.args.candidates})
        expect(texts(answer.outputs["model"])[0] == route.strip(":").rsplit("_", 1)[0] + ":1",
               f"{ROUTE} {route!r} but the answer came from {texts(answer.outputs['model'])[0]}")
        return f"{ROUTE} {route}; {detail}"

    def _sticky_echo(self) -> str:
        if self.client.no_headers:
            raise NotApplicable(self.client.no_headers)
        first = self._experiment_call()
        route = first.headers.get(ROUTE)
        expect(route is not None, f"no {ROUTE} response header to send back")
        models = set()
        for _ in range(STICKY_CALLS):
            answer = self._experiment_call(route)
            models.add(texts(answer.outputs["model"])[0])
            expect(answer.headers.get(ROUTE) == route, f"sent {ROUTE} {route!r}, the answer names "
                                                       f"{answer.headers.get(ROUTE)!r}")
        expect(models == {texts(first.outputs["model"])[0]}, f"first answer from {texts(first.outputs['model'])}, "
                                                             f"then with its route from {sorted(models)}")
        return f"{route} kept {STICKY_CALLS} times: {sorted(models)}"

    def _sticky(self, candidate: str) -> str:
        """A client that cannot read the header still sticks by sending Seldon's value for the candidate."""
        models = [texts(self._experiment_call(route_value(candidate)).outputs["model"])[0]
                  for _ in range(STICKY_CALLS)]
        expect(set(models) == {f"{candidate}:1"}, f"answers from {models}; expected {candidate}:1 each time")
        return f"{STICKY_CALLS} answers from {candidate}:1"

    def feedback(self) -> None:
        """A decision under a request id the client chose, then feedback by that id: a router's decision id is the
        request id, so the client needs none of the router's outputs."""
        if not self.args.feedback_router:
            return
        request_id = self.new_id()
        via = f"{self.args.feedback_pipeline}.pipeline" if self.args.seldon else self.args.feedback_router
        self.report.check(f"decision with request id {request_id} via {via}", lambda: self._decision(request_id))
        self.report.check(f"feedback by request id to {self.args.feedback_router}",
                          lambda: self._feedback(request_id))

    def _decision(self, request_id: str) -> str:
        router = self.args.feedback_router
        if self.args.seldon:
            pipeline = self.args.feedback_pipeline
            answer = self.client.infer(pipeline, {"ohlcv": self.window}, {SELDON_MODEL: f"{pipeline}.pipeline"},
                                       self.plain, request_id=request_id, outputs=LSTM_OUTPUTS)
            detail, _ = lstm_answer(answer, {f"{m}:1" for m in self.lstms})
        else:
            answer = self.client.infer(router, {"ohlcv": self.window}, {}, self.plain, request_id=request_id,
                                       outputs=("arm", "propensity", "decision_id"))
            detail = router_answer(answer, self.window, arm_tensor=self.plain.outputs is None, request_id=request_id)
        expect(answer.id == request_id, f"the response id is {answer.id!r}; the protocol returns the request's "
                                        f"{request_id!r}")
        return detail

    def _feedback(self, request_id: str) -> str:
        router = self.args.feedback_router
        inputs = {"decision_id": np.array([request_id.encode()], dtype=object), "reward": np.array([1.0])}
        answer = self.client.infer(router, inputs, self.headers(router), self.plain, outputs=("status",))
        status = texts(expect_tensor(answer, "status", "BYTES", (1,)))
        expect(status == ["applied"], f"status {status}; expected ['applied']")
        return f"status {status}"

    def bad_input(self) -> None:
        check = self.report.check
        model = next(m for m in self.args.lstms if m not in self.args.pin)
        windows, headers = self.windows, self.headers(model)
        for encoding in dict.fromkeys(Encoding(e.inputs) for e in self.client.encodings):
            cases = {"a negative price": {"ohlcv": windows["negative"]},
                     "too short a window": {"ohlcv": windows["short"]},
                     "a wrong input name": {"prices": self.window}}
            if encoding.inputs != "json":  # standard JSON has no NaN
                cases["a NaN price"] = {"ohlcv": windows["nan"]}
            for case, inputs in cases.items():
                check(f"bad input to {model}: {case} ({encoding.inputs})", lambda i=inputs, e=encoding: expect_error(
                    self.client, lambda: self.client.infer(model, i, headers, e), "bad"))
        plain = self.plain
        check(f"unknown model {UNKNOWN_MODEL}", lambda: expect_error(self.client, lambda: self.client.infer(
            UNKNOWN_MODEL, {"ohlcv": self.window}, self.headers(UNKNOWN_MODEL), plain), "unknown"))
        if self.args.seldon:
            for pipeline in self.args.pipelines:
                check(f"bad input to {pipeline}.pipeline: too short a window", lambda p=pipeline: expect_error(
                    self.client, lambda: self.client.infer(p, {"ohlcv": windows["short"]},
                                                           {SELDON_MODEL: f"{p}.pipeline"}, plain), "bad"))

    def new_id(self) -> str:
        """A request id of the characters every layer accepts (README, Wire contract)."""
        return f"conformance-{self.client.name.replace('.', '-')}-{uuid.uuid4().hex[:12]}"


def names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--rest", required=True, help="REST base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--grpc", required=True, help="gRPC address, e.g. 127.0.0.1:8081")
    parser.add_argument("--seldon", action="store_true", help="the target is market-ab serve: send seldon-model")
    parser.add_argument("--inputs", required=True, help=".npz of windows: ohlcv, drift, short, negative, nan")
    parser.add_argument("--lstms", type=names, default=[])
    parser.add_argument("--routers", type=names, default=[])
    parser.add_argument("--detectors", type=names, default=[])
    parser.add_argument("--pipelines", type=names, default=[], help="with --seldon")
    parser.add_argument("--experiment", default="", help="with --seldon: an Experiment's name")
    parser.add_argument("--candidates", type=names, default=[], help="the experiment's candidate models")
    parser.add_argument("--pin", type=names, default=[],
                        help="models that are an experiment's default: calls for them name them in x-seldon-route")
    parser.add_argument("--feedback-router", default="")
    parser.add_argument("--feedback-pipeline", default="", help="with --seldon: the pipeline whose router decides")
    args = parser.parse_args(argv)
    args.models = args.lstms + args.routers + args.detectors
    if not args.lstms or not [m for m in args.lstms if m not in args.pin]:
        parser.error("--lstms must name at least one model outside --pin")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    # `import kserve` parses the process's command line for its model server's flags (kserve/model_server.py), and
    # `--grpc` is an ambiguous prefix of three of them: it exits 2 unless the client is imported with argv bare
    del sys.argv[1:]
    with np.load(args.inputs) as stored:
        windows = {name: stored[name].astype(np.float32) for name in stored.files}
    client = CLIENT_TYPES[args.client](args.rest, args.grpc)
    Conformance(client, args, windows).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
