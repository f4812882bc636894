"""Every model's metadata (REST ``GET /v2/models/<m>``, gRPC ``ModelMetadata``) lists what its runtime really takes
and answers, so that clients that build requests from metadata (tritonclient, KServe) can call it.

The declarations in ``models/`` equal the runtimes' signatures; a real MLServer serving the whole repository answers
them over both protocols; requests built from nothing but the metadata (names, datatypes, shapes; each -1 filled
with a valid size, the values real market data) are answered with outputs it declares; a declared input sent in
another datatype is refused; and a router whose settings name other arms serves metadata with those arms.
"""

from __future__ import annotations

import importlib
import json
import urllib.error
import urllib.request
import uuid
from functools import cache
from itertools import cycle, islice
from pathlib import Path

import grpc
import numpy as np
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

from seldon_market_ab.detectors.drift import DriftRuntime
from seldon_market_ab.detectors.reference import Reference
from seldon_market_ab.detectors.settings import DriftSettings
from seldon_market_ab.features import WARMUP, compute_features
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.metadata import Signature, settings_fields
from seldon_market_ab.routers.outcomes import OutcomesRuntime
from seldon_market_ab.routers.runtime import BanditRouter
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.runtimes.lstm import LSTMRuntime
from seldon_market_ab.training import drift_reference, train
from seldon_market_ab.training.data import load_instrument
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import LSTM_NAMES, MODELS, add_router, copy_repository

MODEL_NAMES = tuple(sorted(path.parent.name for path in MODELS.glob("*/model-settings.json")))
OTHER_ROUTER, OTHER_ARMS = "thompson-other-arms", ("baseline", "robust")  # thompson-router's file, other arms
SERVED_NAMES = (*MODEL_NAMES, OTHER_ROUTER)
NUMPY_TYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}
CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents", "INT64": "int64_contents",
            "BOOL": "bool_contents", "BYTES": "bytes_contents"}
# A datatype no runtime accepts in place of the declared one (FP32 inputs also take FP64; INT32 ones BOOL, INT64).
WRONG = {"FP32": "INT32", "FP64": "INT32", "INT32": "FP32", "BOOL": "FP32", "BYTES": "INT32"}


@cache
def settings_of(folder: Path) -> dict:
    return json.loads((folder / "model-settings.json").read_text())


@cache
def signature_of(folder: Path) -> Signature:
    """The signature the folder's runtime (its ``implementation``) serves for its settings and artifact."""
    settings = settings_of(folder)
    module, _, name = settings["implementation"].rpartition(".")
    runtime = getattr(importlib.import_module(module), name)
    extra = settings["parameters"].get("extra", {})
    if issubclass(runtime, LSTMRuntime):
        return runtime.signature(LSTMArtifact.load(folder))
    if issubclass(runtime, BanditRouter):
        return runtime.signature(runtime.settings_class.from_extra(extra, folder.name))
    if issubclass(runtime, OutcomesRuntime):
        return runtime.signature(runtime.settings_class.from_extra(extra, folder.name))
    if issubclass(runtime, DriftRuntime):
        return runtime.signature(DriftSettings.from_extra(extra, folder.name), Reference.load(folder))
    pytest.fail(f"{folder.name}: this test does not know how {runtime.__name__} computes its signature; add it")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_settings_file_declares_its_runtime_signature(name):
    """What the file declares is what the runtime will serve, so the warning at load stays for real changes."""
    folder = MODELS / name
    settings = settings_of(folder)
    declared = {key: settings.get(key) for key in ("inputs", "outputs", "versions")}
    assert declared == settings_fields(signature_of(folder), settings["parameters"]["version"])


def test_the_writers_write_the_shipped_settings(artifacts):
    """``market-ab train`` and ``market-ab reference`` write exactly the shipped files, declarations included."""
    for name, artifact in artifacts.items():
        assert train.model_settings(artifact) == settings_of(MODELS / name), name
    folder = MODELS / drift_reference.FOLDER
    assert drift_reference.model_settings(Reference.load(folder)) == settings_of(folder)


# A real MLServer serving a copy of the repository ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Every model in models/ and thompson-router's file served with other arms, in one MLServer (routers keep their
    state in the server's own state directory)."""
    repository = copy_repository(tmp_path_factory.mktemp("metadata"), MODEL_NAMES)
    add_router(repository, OTHER_ROUTER, "thompson-router", arms=",".join(OTHER_ARMS))
    with MLServerProcess(repository) as process:
        channel = grpc.insecure_channel(process.grpc_address)
        yield repository, process, dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        channel.close()


def rest_metadata(http_url: str, name: str) -> dict:
    with urllib.request.urlopen(f"{http_url}/v2/models/{name}", timeout=10) as response:
        return json.loads(response.read())


def grpc_metadata(stub, name: str) -> dict:
    """The gRPC answer in the REST answer's shape (a tensor's ``parameters`` only when it has any)."""
    answer = stub.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=10)

    def tensor(t) -> dict:
        out = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        parameters = {key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in t.parameters.items()}
        return {**out, "parameters": parameters} if parameters else out

    return {"name": answer.name, "versions": list(answer.versions), "inputs": [tensor(t) for t in answer.inputs],
            "outputs": [tensor(t) for t in answer.outputs]}


@pytest.fixture(scope="module")
def metadata(server) -> dict[str, dict]:
    _, process, _ = server
    return {name: rest_metadata(process.http_url, name) for name in SERVED_NAMES}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_every_model_serves_its_signature_as_metadata(server, protocol):
    repository, process, stub = server
    for name in SERVED_NAMES:
        answer = rest_metadata(process.http_url, name) if protocol == "rest" else grpc_metadata(stub, name)
        signature = signature_of(repository / name)
        assert answer["name"] == name
        assert answer["versions"] == ["1"], name
        assert answer["inputs"] == [t.as_dict() for t in signature.inputs], name
        assert answer["outputs"] == [t.as_dict() for t in signature.outputs], name


def test_a_router_with_other_arms_serves_them_and_says_the_file_differs(server, metadata):
    _, process, _ = server
    outputs = [t["name"] for t in metadata[OTHER_ROUTER]["outputs"]]
    assert outputs[:len(OTHER_ARMS)] == list(OTHER_ARMS) and "enhanced" not in outputs
    assert all(t["parameters"]["one_of"] == ",".join(OTHER_ARMS) for t in metadata[OTHER_ROUTER]["outputs"][:2])
    log = process.log_path.read_text(errors="replace")
    warning = next(line for line in log.splitlines() if f"{OTHER_ROUTER}: model-settings.json declares" in line)
    assert "outputs: 'enhanced' is declared but not served" in warning
    assert "outputs: 'robust' is served but not declared" in warning
    assert not any(f"{name}: model-settings.json declares" in log for name in MODEL_NAMES)  # as declared


def test_metadata_served_by_parallel_workers_is_the_signature(served_workers):
    """With parallel workers MLServer asks a worker, whose runtime loaded the model, for the metadata."""
    server, _ = served_workers
    for name in LSTM_NAMES:
        answer = rest_metadata(server.http_url, name)
        signature = signature_of(MODELS / name)
        assert answer["inputs"] == [t.as_dict() for t in signature.inputs], name
        assert answer["outputs"] == [t.as_dict() for t in signature.outputs], name
        assert answer["versions"] == ["1"]


# Requests built from the metadata ------------------------------------------------------------------------------

def parameters(tensor: dict) -> dict:
    return tensor.get("parameters") or {}


def belongs(tensor: dict, kind: str) -> bool:
    """A tensor with no ``request`` parameter belongs to every request kind."""
    return "request" not in parameters(tensor) or kind in parameters(tensor)["request"].split(",")


def request_kinds(inputs: list[dict]) -> dict[str, list[dict]]:
    """Request kind -> its inputs (a model whose inputs name no kind has one kind, ``any``)."""
    kinds: dict[str, list[dict]] = {}
    for tensor in inputs:
        for kind in parameters(tensor).get("request", "any").split(","):
            kinds.setdefault(kind, []).append(tensor)
    return kinds


def input_sets(inputs: list[dict]) -> list[list[dict]]:
    """The inputs a request of one kind may send: the required ones with each ``one_of`` choice, then with every
    optional input too."""
    required = [t for t in inputs if not parameters(t).get("optional") and "one_of" not in parameters(t)]
    optional = [t for t in inputs if parameters(t).get("optional")]
    sets = [required + [t] for t in inputs if "one_of" in parameters(t)] or [required]
    return sets + [sets[0] + optional] if optional else sets


def compatible(shape: list[int], declared: list[int]) -> bool:
    return len(shape) == len(declared) and all(d in (-1, s) for s, d in zip(shape, declared, strict=True))


class MarketValues:
    """Valid values for each input a model declares, from real market data: S&P 500 windows, their features (the
    serving feature code's), dates, and the ids of earlier decisions."""

    def __init__(self, rows: int):
        frame = load_instrument("sp500")
        ends = np.arange(4000, 4000 + 5 * 64, 5)
        self.windows = ohlcv_windows("sp500", ends, rows)
        sequence = rows - WARMUP
        self.features = compute_features(self.windows, rows=sequence)[:, -sequence:, :]
        self.dates = [str(day)[:10] for day in frame.index[ends]]

    def __call__(self, tensor: dict, n: int, earlier_ids: list[str], arms: list[str]) -> np.ndarray:
        name, rank = tensor["name"], len(tensor["shape"])
        if name == "ohlcv":
            value = self.windows[:n]
        elif name == "features":
            value = self.features[:n] if rank == 3 else self.features[:n, -1, :]
        elif name == "dates":
            value = np.array(self.dates[:n], dtype=object)
        elif name == "decision_id":
            value = np.array(list(islice(cycle(earlier_ids), n)), dtype=object)
        elif name == "arm":
            value = np.array(list(islice(cycle(arms), n)), dtype=object)
        elif name == "request_id":  # outcomes of the requests sent so far
            value = np.array(list(islice(cycle(earlier_ids), n)), dtype=object)
        elif name == "model":
            value = np.array(["baseline"] * n, dtype=object)
        elif name in ("reward", "healthy", "correct"):
            value = np.ones(n)
        elif name == "return":
            value = np.full(n, 0.01)
        elif name == "error":
            value = np.zeros(n)
        elif name == "vix":
            value = np.full([n if d == -1 else d for d in tensor["shape"]], 20.0)
        else:
            pytest.fail(f"no valid value known for input {name!r}: add one here")
        if tensor["datatype"] != "BYTES":
            value = value.astype(NUMPY_TYPES[tensor["datatype"]])
        assert compatible(list(value.shape), tensor["shape"]), (name, value.shape, tensor["shape"])
        return value


@pytest.fixture(scope="module")
def values(artifacts) -> MarketValues:
    return MarketValues(max(artifact.min_window for artifact in artifacts.values()))


def batches(folder: Path) -> list[int]:
    """Batch sizes to fill -1 with: 2, and for the drift detector a whole window too (tested on its own)."""
    window = settings_of(folder)["parameters"].get("extra", {}).get("window_size")
    return [2, int(window)] if window else [2]


def send_rest(http_url: str, name: str, request_id: str, tensors: list[tuple[dict, np.ndarray]]):
    """(status, [(name, datatype, shape)] of the outputs, or the error message)."""
    body = {"id": request_id, "inputs": [
        {"name": t["name"], "datatype": t["datatype"], "shape": list(v.shape), "data": v.ravel().tolist()}
        for t, v in tensors]}
    request = urllib.request.Request(f"{http_url}/v2/models/{name}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            outputs = json.loads(response.read())["outputs"]
            return response.status, [(o["name"], o["datatype"], o["shape"]) for o in outputs]
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def send_grpc(stub, name: str, request_id: str, tensors: list[tuple[dict, np.ndarray]]):
    request = pb.ModelInferRequest(model_name=name, id=request_id)
    for t, v in tensors:
        tensor = request.inputs.add(name=t["name"], datatype=t["datatype"], shape=list(v.shape))
        data = [str(x).encode() for x in v.ravel()] if t["datatype"] == "BYTES" else v.ravel().tolist()
        getattr(tensor.contents, CONTENTS[t["datatype"]]).extend(data)
    response = stub.ModelInfer(request, timeout=60)
    return 200, [(o.name, o.datatype, list(o.shape)) for o in response.outputs]


def check_outputs(declared: list[dict], kind: str, answer: list[tuple]) -> None:
    """Every output is declared for this kind of request with its datatype and a compatible shape, and every output
    the metadata does not call optional is there (one of each ``one_of`` group)."""
    by_name = {t["name"]: t for t in declared}
    for name, datatype, shape in answer:
        assert name in by_name, f"output {name!r} is not in the metadata"
        tensor = by_name[name]
        assert belongs(tensor, kind), (name, kind)
        assert datatype == tensor["datatype"] and compatible(shape, tensor["shape"]), (name, datatype, shape, tensor)
    answered = {name for name, _, _ in answer}
    expected = [t for t in declared if belongs(t, kind) and not parameters(t).get("optional")]
    assert {t["name"] for t in expected if "one_of" not in parameters(t)} <= answered
    for group in {parameters(t)["one_of"] for t in expected if "one_of" in parameters(t)}:
        assert len(answered & set(group.split(","))) == 1, (group, answered)


def requests_from(metadata: dict, folder: Path, values: MarketValues):
    """(kind, request id, [(tensor metadata, value)]) for every request kind, input set and batch size; a kind's
    requests come after those of the kinds before it, so feedback names decisions made before."""
    arms = [t["name"] for t in metadata["outputs"] if "one_of" in parameters(t) and "request" in parameters(t)]
    earlier_ids: list[str] = []
    for kind, inputs in request_kinds(metadata["inputs"]).items():
        for tensors in input_sets(inputs):
            for n in batches(folder):
                request_id = f"meta-{uuid.uuid4().hex}"
                yield kind, request_id, [(t, values(t, n, earlier_ids or [request_id], arms)) for t in tensors]
                earlier_ids.append(request_id)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("name", SERVED_NAMES)
def test_requests_built_from_the_metadata_are_answered_as_it_declares(server, metadata, values, name, protocol):
    repository, process, stub = server
    kinds = set()
    for kind, request_id, tensors in requests_from(metadata[name], repository / name, values):
        if protocol == "rest":
            status, answer = send_rest(process.http_url, name, request_id, tensors)
        else:
            status, answer = send_grpc(stub, name, request_id, tensors)
        assert status == 200, (kind, [t["name"] for t, _ in tensors], answer)
        check_outputs(metadata[name]["outputs"], kind, answer)
        kinds.add(kind)
    routes = any("request" in parameters(t) for t in metadata[name]["inputs"])  # a router's three request kinds
    expected = {"decision", "feedback", "health"} if routes else {"any"}
    assert kinds == expected


@pytest.mark.parametrize("name", SERVED_NAMES)
def test_a_declared_input_in_another_datatype_is_refused(server, metadata, values, name):
    """The declared datatype is the one the runtime checks: the same request with one input in a datatype no
    runtime takes for it is answered 400, naming the input and the datatype."""
    repository, process, _ = server
    requests = list(requests_from(metadata[name], repository / name, values))
    for declared in metadata[name]["inputs"]:
        _, request_id, tensors = next(r for r in requests if any(t is declared for t, _ in r[2]))
        wrong = WRONG[declared["datatype"]]
        changed = [({**t, "datatype": wrong}, np.ones(v.shape, NUMPY_TYPES[wrong])) if t is declared else (t, v)
                   for t, v in tensors]
        status, message = send_rest(process.http_url, name, request_id, changed)
        assert status == 400, (declared["name"], status, message)
        assert declared["name"] in message and f"got {wrong}" in message, message
