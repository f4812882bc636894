"""Open Inference Protocol requests, good and bad, sent over REST (JSON, and the binary data extension) and gRPC to a
real MLServer.

Hypothesis generates each case from the wire contract (docs/clients.md): real market windows, feature
tensors, router decisions, feedback and health messages, then breaks them the ways clients do: wrong
names, datatypes and shapes, negative dimensions, data that does not fit the shape, NaN and
infinities, raw contents of the wrong length or missing, ids in other alphabets or far too long,
parameters of the wrong type, unknown models and versions, and bodies that are not JSON at all. Over the binary
data extension every tensor travels as bytes, and the extension itself is broken too: a JSON length that is not
the JSON's, sizes that do not fit the shape or the body, bytes left over, data beside bytes, flags of another type.

The same cases also go through ``market-ab serve`` (the gateway, routed by the ``seldon-model`` header), with
valid and broken windows sent to its pipelines too: protocols ``gateway-grpc``, ``gateway-rest``,
``gateway-binary``.

Every answer is sorted into ``ok``, ``client_error`` (4xx, ``INVALID_ARGUMENT``, ``NOT_FOUND``,
``FAILED_PRECONDITION``, ``UNAVAILABLE``, ``RESOURCE_EXHAUSTED`` for an oversized message) or
``mishandled``: a 5xx, ``INTERNAL``, ``UNKNOWN``, a dropped connection, a hang, a REST error whose body is not
the protocol's ``{"error": ...}``, or a request that breaks the contract answered as if it were good. The goal is no
``mishandled`` at all.

    python -m seldon_market_ab.loadtest.fuzz --requests 10000   # per protocol and target; writes docs/fuzz.{json,md}
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

from seldon_market_ab.binary_data import HEADER
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.protocol_types import DTYPES as RAW_DTYPES
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.tensor_bytes import pack_bytes
from seldon_market_ab.training.dataset import ohlcv_windows

OK, CLIENT_ERROR, MISHANDLED = "ok", "client_error", "mishandled"
PROTOCOLS = ("grpc", "rest", "binary")  # binary: REST with the binary data extension
SELDON_MODEL = "seldon-model"
CLIENT_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE}
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
          "UINT8": np.uint8, "FP16": np.float16}


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list  # flat, Python values (floats, ints, bools, bytes)
    raw: bytes | None = None  # raw gRPC contents, when the case sends them (possibly of the wrong length)


@dataclass
class Case:
    """One request, and whether the contract says it is good (``True``), bad (``False``) or either (``None``)."""

    model: str
    tensors: list[Tensor]
    category: str
    valid: bool | None
    request_id: str | None = None
    version: str | None = None
    parameters: dict | None = None
    missing_raw: bool = False  # send fewer raw buffers than inputs
    body: bytes | None = None  # REST only: a body that is not a request at all
    headers: dict = field(default_factory=dict)


def tensor(name: str, array: np.ndarray, datatype: str | None = None) -> Tensor:
    array = np.asarray(array)
    datatype = datatype or next(k for k, v in DTYPES.items() if v == array.dtype.type)
    return Tensor(name, datatype, list(array.shape), array.ravel().tolist())


# strategies ---------------------------------------------------------------------------------------------------

def good_window(windows: np.ndarray):
    """A real market window (or a few), FP32 or FP64: what the LSTMs and routers take."""
    return st.tuples(st.integers(0, len(windows) - 1), st.integers(1, 3), st.sampled_from(["FP32", "FP64"])).map(
        lambda t: tensor("ohlcv", windows[t[0]:t[0] + t[1]].astype(DTYPES[t[2]]), t[2]))


ID_TEXT = st.one_of(st.text(min_size=1, max_size=40),  # any unicode, control characters included
                    st.text(alphabet="abcdef0123456789-", min_size=1, max_size=64),
                    st.integers(129, 20_000).map(lambda n: "x" * n),
                    st.sampled_from(["trade 1 ", "ünïcödé", "日本語", "a\nb", "\x00", " ", "a" * 128]))


@st.composite
def cases(draw, windows: np.ndarray, features: np.ndarray, router: str = "thompson-router",
          pipelines: tuple[str, ...] = ()):
    """A case for a model, or (``pipelines``: through the gateway) for a pipeline: a valid window, or a broken one."""
    kinds = ["lstm", "lstm", "decision", "feedback", "health", "bad_tensor", "bad_tensor", "bad_raw", "bad_id",
             "bad_parameters", "unknown_model", "bad_binary", "garbage"]
    kind = draw(st.sampled_from(kinds + (["pipeline", "bad_pipeline"] if pipelines else [])))
    request_id = draw(st.one_of(st.none(), st.uuids().map(str)))
    if kind == "pipeline":
        return Case(draw(st.sampled_from(pipelines)), [draw(good_window(windows))], "valid pipeline request", True,
                    request_id)
    if kind == "bad_pipeline":
        case = draw(bad_tensor(windows, router))
        case.model = draw(st.sampled_from(pipelines))
        return case
    if kind == "lstm":
        t = draw(st.one_of(good_window(windows), st.just(tensor("features", features[:1]))))
        return Case("baseline", [t], "valid lstm request", True, request_id)
    if kind == "decision":
        return Case(router, [draw(good_window(windows))], "valid router decision", True, request_id)
    if kind == "feedback":
        n = draw(st.integers(1, 3))
        ids = draw(st.lists(st.text(alphabet="abc0123-", min_size=1, max_size=20), min_size=n, max_size=n))
        rewards = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
        return Case(router, [Tensor("decision_id", "BYTES", [n], [i.encode() for i in ids]),
                             tensor("reward", np.array(rewards))], "valid feedback", True, request_id)
    if kind == "health":
        return Case(router, [Tensor("arm", "BYTES", [1], [b"lightweight"]), tensor("healthy", np.array([1], np.int32))],
                    "valid health message", True, request_id)
    if kind == "bad_tensor":
        return draw(bad_tensor(windows, router))
    if kind == "bad_raw":
        good = draw(good_window(windows))
        raw = struct.pack(f"<{len(good.values)}{'f' if good.datatype == 'FP32' else 'd'}", *good.values)
        how = draw(st.sampled_from(["short", "long", "missing buffer", "unknown datatype", "odd length"]))
        if how == "short":
            good.raw = raw[: draw(st.integers(0, len(raw) - 1))]
        elif how == "long":
            good.raw = raw + bytes(draw(st.integers(1, 64)))
        elif how == "odd length":
            good.raw = raw[:-1]
        elif how == "unknown datatype":
            good.raw, good.datatype = raw, draw(st.sampled_from(["XYZ", "", "FP128", "fp32"]))
        else:
            good.raw = raw
            return Case(draw(st.sampled_from(["baseline", router])), [good, Tensor("vix", "FP64", [1], [20.0])],
                        "raw contents: fewer buffers than inputs", False, missing_raw=True)
        return Case(draw(st.sampled_from(["baseline", router])), [good], f"raw contents: {how}", False)
    if kind == "bad_id":
        model = draw(st.sampled_from(["baseline", router]))
        return Case(model, [draw(good_window(windows))], "request id outside the documented alphabet or length",
                    None, draw(ID_TEXT))
    if kind == "bad_parameters":
        parameters = draw(st.sampled_from([{"content_type": 5}, {"headers": "x"}, {"headers": {"a": 1}},
                                           {"x": [1, {"y": None}]}, {"content_type": "np", "other": 1e308}]))
        return Case("baseline", [draw(good_window(windows))], "parameters of another type", None,
                    parameters=parameters)
    if kind == "unknown_model":
        name = draw(st.one_of(st.text(alphabet="abcdefgh-", min_size=1, max_size=12), st.just("baseline")))
        version = draw(st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=4)))
        valid = None if name == "baseline" else False  # baseline's own version ("1") may be drawn
        return Case(name, [draw(good_window(windows))], "unknown model or version", valid, version=version)
    if kind == "bad_binary":
        return draw(bad_binary(windows, router))
    body = draw(st.one_of(st.binary(max_size=200), st.just(b"{"), st.just(b"[]"), st.just(b'{"inputs": 5}'),
                          st.just(b'{"inputs": [{"name": "ohlcv"}]}'), st.just(b"\xff\xfe")))
    return Case("baseline", [], "not a request", False, body=body)


@st.composite
def bad_tensor(draw, windows: np.ndarray, router: str):
    model = draw(st.sampled_from(["baseline", router]))
    good = draw(good_window(windows))
    how = draw(st.sampled_from(["name", "datatype", "negative dimension", "rank", "too short", "data count", "nan",
                                "inf", "negative price", "empty batch", "int64 overflow", "bad utf-8 id",
                                "nan reward", "bool health"]))
    if how == "name":
        good.name = draw(st.sampled_from(["prices", "", "OHLCV", "x" * 300, "ohlcv\x00"]))
    elif how == "datatype":
        good.datatype = draw(st.sampled_from(["INT32", "BYTES", "BOOL", "UINT8", "XYZ", ""]))
        if good.datatype in ("INT32", "UINT8"):
            good.values = [int(v) for v in good.values]
    elif how == "negative dimension":
        good.shape = [-good.shape[0], *good.shape[1:]] if draw(st.booleans()) else [-1, good.shape[1], 5]
    elif how == "rank":
        good.shape = [good.shape[0] * good.shape[1], 5]
    elif how == "too short":
        rows = draw(st.integers(1, good.shape[1] - 1))
        good.shape, good.values = [1, rows, 5], good.values[: rows * 5]
    elif how == "data count":
        good.values = good.values[: draw(st.integers(0, len(good.values) - 1))]
    elif how in ("nan", "inf"):
        good.values = list(good.values)
        good.values[draw(st.integers(0, len(good.values) - 1))] = float("nan") if how == "nan" else float("inf")
    elif how == "negative price":
        good.values = [-abs(v) for v in good.values]
    elif how == "empty batch":
        good.shape, good.values = [0, good.shape[1], 5], []
    elif how == "int64 overflow":
        return Case(model, [Tensor("arm", "BYTES", [1], [b"baseline"]),
                            Tensor("healthy", "INT64", [1], [draw(st.integers(2**63, 2**80))])],
                    "bad tensor: int64 overflow", False)
    elif how == "bad utf-8 id":
        return Case(model, [Tensor("decision_id", "BYTES", [1], [b"\xff\xfe\xfd"]), tensor("reward", np.ones(1))],
                    "bad tensor: bad utf-8 id", False)
    elif how == "nan reward":
        return Case(model, [Tensor("decision_id", "BYTES", [1], [b"abc"]), tensor("reward", np.array([np.nan]))],
                    "bad tensor: nan reward", False)
    else:
        return Case(model, [Tensor("arm", "BYTES", [1], [b"baseline"]), Tensor("healthy", "BOOL", [1], [True])],
                    "valid health message (BOOL)", None)
    return Case(model, [good], f"bad tensor: {how}", False)


@st.composite
def bad_binary(draw, windows: np.ndarray, router: str):
    """A body that breaks the binary data extension (sent as it is over both REST variants; over gRPC the case has
    no tensors, a client error too)."""
    model = draw(st.sampled_from(["baseline", router]))
    good = draw(good_window(windows))
    raw = np.asarray(good.values, dtype=RAW_DTYPES[good.datatype]).tobytes()
    entry = {"name": "ohlcv", "datatype": good.datatype, "shape": good.shape,
             "parameters": {"binary_data_size": len(raw)}}
    how = draw(st.sampled_from(["length beyond the body", "length zero", "length not a number", "size too small",
                                "size too large", "bytes left over", "data beside bytes", "negative size",
                                "size not a number", "no header", "flag not a boolean", "bytes item cut",
                                "truncated"]))
    length = None
    if how == "size too small":
        entry["parameters"]["binary_data_size"] = len(raw) - draw(st.integers(1, len(raw)))
    elif how == "size too large":
        entry["parameters"]["binary_data_size"] = len(raw) + draw(st.integers(1, 64))
    elif how == "data beside bytes":
        entry["data"] = good.values[:5]
    elif how == "negative size":
        entry["parameters"]["binary_data_size"] = -len(raw)
    elif how == "size not a number":
        entry["parameters"]["binary_data_size"] = draw(st.sampled_from([str(len(raw)), True, float(len(raw)), None]))
    elif how == "bytes item cut":
        entry = {"name": "decision_id", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}
        raw = pack_bytes([b"abcdef"])[:6]
    request = {"inputs": [entry]}
    if how == "flag not a boolean":
        request["parameters"] = {"binary_data_output": draw(st.sampled_from([1, "true", None, [True]]))}
    head = json.dumps(request).encode()
    body = head + raw + (bytes(draw(st.integers(1, 16))) if how == "bytes left over" else b"")
    if how == "truncated":
        body = body[: draw(st.integers(1, len(body) - 1))]
    length = {"length beyond the body": str(len(body) + draw(st.integers(1, 100))), "length zero": "0",
              "length not a number": draw(st.sampled_from(["abc", "", "-5", "1e3", " 12"])),
              "no header": None}.get(how, str(len(head)))
    return Case(model, [], f"binary extension: {how}", False, body=body,
                headers={} if length is None else {HEADER: length})


# senders ------------------------------------------------------------------------------------------------------

_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents", "INT64": "int64_contents",
             "BOOL": "bool_contents", "UINT8": "uint_contents", "BYTES": "bytes_contents"}


def grpc_request(case: Case) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=case.model, model_version=case.version or "", id=case.request_id or "")
    for name, value in (case.parameters or {}).items():
        if isinstance(value, str):
            request.parameters[name].string_param = value
        elif isinstance(value, bool | int) and abs(value) < 2**63:
            request.parameters[name].int64_param = int(value)
    raws = []
    for t in case.tensors:
        proto = request.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        if t.raw is not None:
            raws.append(t.raw)
            continue
        target = getattr(proto.contents, _CONTENTS.get(t.datatype, "fp64_contents"))
        try:
            target.extend(t.values)
        except (TypeError, ValueError):  # a value the protobuf field cannot hold: send it as bytes
            request.raw_input_contents.append(b"\x00" * 3)
    request.raw_input_contents.extend(raws[:-1] if case.missing_raw else raws)
    return request


def rest_body(case: Case) -> bytes:
    if case.body is not None:
        return case.body
    body = {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape,
                        "data": [v.decode("latin-1") if isinstance(v, bytes) else v for v in t.values]}
                       for t in case.tensors]}
    if case.request_id is not None:
        body["id"] = case.request_id
    if case.parameters is not None:
        body["parameters"] = case.parameters
    return json.dumps(body, allow_nan=True).encode()


def binary_body(case: Case) -> tuple[bytes, dict]:
    """The case with every tensor as bytes after the JSON, and every output asked for as bytes. A tensor whose
    values do not make its datatype's bytes (the case breaks the datatype) goes as JSON data; a case's own raw
    contents (over gRPC, the wrong length or a missing buffer) go as they are."""
    if case.body is not None:
        return case.body, case.headers
    entries, buffers = [], []
    for index, t in enumerate(case.tensors):
        raw = t.raw if t.raw is not None else _bytes_of(t)
        entry = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if raw is None:
            entry["data"] = [v.decode("latin-1") if isinstance(v, bytes) else v for v in t.values]
        else:
            entry["parameters"] = {"binary_data_size": len(raw)}
            if not (case.missing_raw and index == len(case.tensors) - 1):
                buffers.append(raw)
        entries.append(entry)
    body = {"inputs": entries, "parameters": {**(case.parameters or {}), "binary_data_output": True}}
    if case.request_id is not None:
        body["id"] = case.request_id
    head = json.dumps(body, allow_nan=True).encode()
    return head + b"".join(buffers), {HEADER: str(len(head)), **case.headers}


def _bytes_of(t: Tensor) -> bytes | None:
    try:
        if t.datatype == "BYTES":
            return pack_bytes([v if isinstance(v, bytes) else str(v).encode() for v in t.values])
        dtype = np.dtype(RAW_DTYPES[t.datatype])
        if dtype.kind in "iu" and any(not np.iinfo(dtype).min <= v <= np.iinfo(dtype).max for v in t.values):
            return None  # numpy would wrap it round; JSON carries the number as it is
        return np.asarray(t.values, dtype=dtype).tobytes()
    except (KeyError, ValueError, TypeError, OverflowError):
        return None


def send_grpc(stub, case: Case, timeout: float, seldon: bool = False) -> tuple[str, str]:
    """(category of the answer, its status)"""
    try:
        stub.ModelInfer(grpc_request(case), metadata=((SELDON_MODEL, case.model),) if seldon else (), timeout=timeout)
        return OK, "OK"
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return MISHANDLED, "hang"
        return (CLIENT_ERROR if code in CLIENT_CODES else MISHANDLED), code.name


def send_rest(host: str, port: int, case: Case, timeout: float, binary: bool = False,
              seldon: bool = False) -> tuple[str, str]:
    path = f"/v2/models/{case.model}" + (f"/versions/{case.version}" if case.version else "") + "/infer"
    body, headers = binary_body(case) if binary else (rest_body(case), {"Content-Type": "application/json",
                                                                         **case.headers})
    headers = {**headers, SELDON_MODEL: case.model} if seldon else headers
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", path.encode("utf-8", "surrogateescape").decode("latin-1"), body=body,
                           headers=headers)
        response = connection.getresponse()
        status, answer = response.status, response.read()
    except TimeoutError:
        return MISHANDLED, "hang"
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        return MISHANDLED, f"dropped ({type(error).__name__})"
    finally:
        connection.close()
    if 200 <= status < 300:
        return OK, str(status)
    if not _protocol_error(answer):
        return MISHANDLED, f"{status} without the protocol's {{\"error\": ...}} body"
    return (CLIENT_ERROR if 400 <= status < 500 or status == 503 else MISHANDLED), str(status)


def _protocol_error(body: bytes) -> bool:
    """Whether an error's body is the protocol's ``{"error": "..."}``, which clients parse."""
    try:
        return isinstance(json.loads(body).get("error"), str)
    except (ValueError, AttributeError):
        return False


def judge(case: Case, category: str, protocol: str) -> str:
    """A request that breaks the contract but is answered as good is mishandled too. (Raw contents exist over gRPC
    and the binary data extension: over JSON the same case carries good data.)"""
    valid = True if protocol == "rest" and case.category.startswith("raw contents") else case.valid
    return MISHANDLED if category == OK and valid is False else category


# running ------------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)  # (protocol, outcome, status) -> n
    by_category: Counter = field(default_factory=Counter)  # (protocol, category, outcome) -> n
    examples: dict = field(default_factory=dict)  # (protocol, category, status) -> request description

    def add(self, protocol: str, case: Case, outcome: str, status: str) -> None:
        self.counts[(protocol, outcome, status)] += 1
        self.by_category[(protocol, case.category, outcome)] += 1
        if outcome == MISHANDLED:
            self.examples.setdefault((protocol, case.category, status), repr(case)[:300])

    def mishandled(self, protocol: str | None = None) -> int:
        return sum(n for (p, outcome, _), n in self.counts.items()
                   if outcome == MISHANDLED and protocol in (None, p))


def run(grpc_address: str, http_host: str, http_port: int, windows: np.ndarray, features: np.ndarray,
        requests: int, protocols=PROTOCOLS, timeout: float = 10.0, seed_value: int = 0,
        tally: Tally | None = None, pipelines: tuple[str, ...] | None = None) -> Tally:
    """Send ``requests`` generated cases per protocol; returns the tally of answers. ``pipelines`` (the gateway's):
    route every case by the ``seldon-model`` header, pipelines among the targets, and tally as ``gateway-*``."""
    tally = tally or Tally()
    channel = grpc.insecure_channel(grpc_address)
    stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
    for protocol in protocols:
        send_cases(protocol, stub, http_host, http_port, windows, features, requests, timeout, seed_value, tally,
                   pipelines)
    channel.close()
    return tally


def send_cases(protocol, stub, http_host, http_port, windows, features, requests, timeout, seed_value, tally,
               pipelines=None):
    seldon = pipelines is not None
    name = f"gateway-{protocol}" if seldon else protocol

    @seed(seed_value)
    @settings(max_examples=requests, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(cases(windows, features, pipelines=pipelines or ()))
    def send(case):
        outcome, status = (send_grpc(stub, case, timeout, seldon) if protocol == "grpc"
                           else send_rest(http_host, http_port, case, timeout, protocol == "binary", seldon))
        tally.add(name, case, judge(case, outcome, protocol), status)

    send()


def _outcomes(tally: Tally, protocol: str) -> dict[str, int]:
    outcomes = Counter()
    for (p, outcome, _), n in tally.counts.items():
        if p == protocol:
            outcomes[outcome] += n
    return dict(outcomes)


def results_of(tally: Tally, requests: int, seconds: float) -> dict:
    protocols = sorted({p for p, _, _ in tally.counts})
    return {
        "requests_per_protocol": requests, "seconds": seconds,
        "protocols": {p: {"requests": sum(n for (q, _, _), n in tally.counts.items() if q == p),
                          "outcomes": _outcomes(tally, p),
                          "statuses": {f"{o}: {s}": n for (q, o, s), n in sorted(tally.counts.items()) if q == p},
                          "mishandled": tally.mishandled(p)} for p in protocols},
        "by_category": {f"{p} | {c} | {o}": n for (p, c, o), n in sorted(tally.by_category.items())},
        "mishandled_examples": {f"{p} | {c} | {s}": e for (p, c, s), e in sorted(tally.examples.items())},
    }


def render_markdown(results: dict) -> str:
    lines = [f"Generated by `python -m seldon_market_ab.loadtest.fuzz --requests {results['requests_per_protocol']}` "
             f"({results['seconds']:.0f} s; hypothesis, seed 0, one MLServer with the shipped models, and "
             "`market-ab serve` on the dev overlay for the `gateway-*` rows).", "",
             "| protocol | requests | ok | client error | mishandled (5xx, INTERNAL, UNKNOWN, dropped, hang, an error "
             "without the `{\"error\"}` body, bad request answered as good) |", "|---|---|---|---|---|"]
    for protocol, p in results["protocols"].items():
        outcomes = p["outcomes"]
        lines.append(f"| {protocol} | {p['requests']:,} | {outcomes.get(OK, 0):,} | {outcomes.get(CLIENT_ERROR, 0):,} |"
                     f" {p['mishandled']:,} |")
    labels = results["metric_model_labels"]
    lines += ["", f"Model labels on `/metrics` afterwards: {', '.join(labels['served'])} (the models served); "
                  f"{len(labels['other'])} others."]
    lines += ["", "| protocol | answer | requests |", "|---|---|---|"]
    for protocol, p in results["protocols"].items():
        lines += [f"| {protocol} | {status} | {n:,} |" for status, n in p["statuses"].items()]
    return "\n".join(lines)


def model_labels(metrics_url: str) -> set[str]:
    """Every ``model`` label value on the server's ``/metrics``: bounded by the models it serves."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(metrics_url, timeout=10).read().decode()
    return {s.labels["model"] for f in text_string_to_metric_families(text) for s in f.samples if "model" in s.labels}


def sample_inputs(models_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real held-out windows of the three instruments, and the features of a few of them."""
    artifact = LSTMArtifact.load(models_dir / "baseline")
    windows = np.concatenate([ohlcv_windows(name, np.arange(2000, 2040, 4), artifact.min_window)
                              for name in ("sp500", "nasdaq", "goog")])
    return windows, artifact.features_from_ohlcv(windows[:4]).astype(np.float32)


def fuzz_gateway(models_dir: Path, windows: np.ndarray, features: np.ndarray, requests: int, tally: Tally,
                 log_path: Path | None = None) -> Tally:
    """The same cases through ``market-ab serve`` on the dev overlay, its pipelines among the targets."""
    from seldon_market_ab.local_seldon.serve_process import ServeProcess

    overlay = Path(__file__).resolve().parents[1] / "manifests" / "overlays" / "dev"
    with ServeProcess(models_dir, [overlay], seed=0, log_path=log_path) as serve:
        return run(serve.grpc_address, "127.0.0.1", serve.http_port, windows, features, requests, tally=tally,
                   pipelines=("mab.pipeline", "contextual.pipeline"))


def fuzz_repository(models_dir: Path, destination: Path) -> Path:
    """The models under test (an LSTM and a router) with the shipped server settings."""
    for name in ("baseline", "thompson-router"):
        shutil.copytree(models_dir / name, destination / name)
    shutil.copy(models_dir / "settings.json", destination / "settings.json")
    return destination


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="per protocol")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    windows, features = sample_inputs(args.models_dir)
    repository = fuzz_repository(args.models_dir, Path(tempfile.mkdtemp(prefix="market-ab-fuzz-")) / "models")
    started = time.perf_counter()
    with MLServerProcess(repository, parallel_workers=None) as server:
        tally = run(server.grpc_address, "127.0.0.1", server.http_port, windows, features, args.requests)
        labels = model_labels(server.metrics_url)
    fuzz_gateway(args.models_dir, windows, features, args.requests, tally)
    results = results_of(tally, args.requests, time.perf_counter() - started)
    served = {p.parent.name for p in repository.glob("*/model-settings.json")}
    results["metric_model_labels"] = {"served": sorted(served), "other": sorted(labels - served)}
    write_evidence(args.out, "fuzz", results, render_markdown)
    for key, example in results["mishandled_examples"].items():
        print(f"mishandled: {key}: {example}")
    return 0 if tally.mishandled() == 0 and not results["metric_model_labels"]["other"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
