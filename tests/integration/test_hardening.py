"""Malformed requests MLServer itself used to answer with INTERNAL / 500, request ids, bounded metric series, a
loading model, and the health gauge after a cooldown: against a real MLServer."""

import http.client
import json
import time
import urllib.request

import grpc
import numpy as np
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from seldon_market_ab.client import InferenceClient, RestError, build_grpc_request
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.protocol import REQUEST_ID_RULE
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MIN_WINDOW, REPO, add_router, copy_repository

WINDOW = ohlcv_windows("sp500", [4100], MIN_WINDOW)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = copy_repository(tmp_path_factory.mktemp("hardening"), ["baseline"])
    add_router(repository, "thompson-router", "thompson-router", max_consecutive_errors=1,
               unhealthy_cooldown_seconds=1, min_share=0.0, warmup_rewards=0)
    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address, server.http_url)
        yield server, client
        client.close()


def grpc_error(client, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        client._stub.ModelInfer(request, timeout=30)
    return error.value


@pytest.mark.parametrize("model", ["baseline", "thompson-router"])
@pytest.mark.parametrize("request_id", ["ünïcödé", "a\nb", "trade 1 ", "x" * 129, "x" * 20_000, "日本語"],
                         ids=["latin-1", "newline", "space", "129 characters", "20000 characters", "cjk"])
def test_request_ids_outside_the_rule_are_refused_before_anything_runs(server, model, request_id):
    """Such ids used to reach MLServer's response headers and gRPC metadata: 500, INTERNAL or a dropped connection."""
    _, client = server
    error = grpc_error(client, build_grpc_request(model, {"ohlcv": WINDOW}, request_id=request_id))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and REQUEST_ID_RULE in error.details()
    with pytest.raises(RestError) as rest:
        client.infer_rest(model, {"ohlcv": WINDOW}, request_id=request_id)
    assert rest.value.status == 400 and REQUEST_ID_RULE in json.loads(rest.value.message)["error"]


def test_a_good_request_id_is_kept(server):
    _, client = server
    answer = client.infer_grpc("thompson-router", {"ohlcv": WINDOW}, request_id="Trade_2026-11-23:a.b")
    assert answer["decision_id"] == ["Trade_2026-11-23:a.b"]


def raw_request(contents: list[bytes], shape=(1, MIN_WINDOW, 5), datatype="FP32", inputs=1) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="baseline")
    for i in range(inputs):
        request.inputs.add(name="ohlcv" if i == 0 else f"extra{i}", datatype=datatype, shape=list(shape))
    request.raw_input_contents.extend(contents)
    return request


GOOD_RAW = WINDOW.astype(np.float32).tobytes()


@pytest.mark.parametrize(("request_", "expected"), [
    (raw_request([GOOD_RAW[:-4]]), f"needs {len(GOOD_RAW)} bytes of raw contents, got {len(GOOD_RAW) - 4}"),
    (raw_request([GOOD_RAW + b"\x00" * 8]), "bytes of raw contents, got"),
    (raw_request([GOOD_RAW[:-1]]), "bytes of raw contents, got"),
    (raw_request([GOOD_RAW], datatype="FP128"), "datatype 'FP128'; raw contents need one of"),
    (raw_request([GOOD_RAW], inputs=2), "2 inputs carry no typed contents but 1 raw_input_contents buffers"),
    (raw_request([GOOD_RAW], shape=(-1, MIN_WINDOW, 5)), "negative dimension"),
], ids=["short", "long", "odd length", "unknown datatype", "fewer buffers", "negative dimension"])
def test_malformed_raw_contents_are_client_errors(server, request_, expected):
    _, client = server
    error = grpc_error(client, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert expected in error.details()


def test_parameters_of_the_wrong_type_are_client_errors(server):
    _, client = server
    request = build_grpc_request("baseline", {"ohlcv": WINDOW})
    request.parameters["content_type"].int64_param = 5
    error = grpc_error(client, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed request" in error.details()


def test_negative_dimensions_over_rest(server):
    _, client = server
    body = {"inputs": [{"name": "ohlcv", "datatype": "FP32", "shape": [-1, MIN_WINDOW, 5],
                        "data": WINDOW.ravel().tolist()}]}
    with pytest.raises(RestError) as error:
        client.infer_rest("baseline", body=body)
    assert error.value.status == 400 and "negative dimension" in error.value.message


def test_numbers_beyond_int64_over_rest(server):
    _, client = server
    body = {"inputs": [{"name": "arm", "datatype": "BYTES", "shape": [1], "data": ["baseline"]},
                       {"name": "healthy", "datatype": "INT64", "shape": [1], "data": [2**70]}]}
    with pytest.raises(RestError) as error:
        client.infer_rest("thompson-router", body=body)
    assert error.value.status == 400 and "beyond the range of INT64" in error.value.message


def test_decision_ids_that_are_not_utf8(server):
    _, client = server
    request = pb.ModelInferRequest(model_name="thompson-router")
    request.inputs.add(name="decision_id", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"\xff\xfe")
    request.inputs.add(name="reward", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    error = grpc_error(client, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not UTF-8" in error.details()


def series(server, prefix: str) -> set:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name.startswith(prefix)}


def test_requests_to_models_that_do_not_exist_add_no_metric_series(server):
    """MLServer labelled its request metrics with any name in the URL before looking the model up."""
    mlserver, client = server
    client.infer_grpc("baseline", {"ohlcv": WINDOW})
    before = series(mlserver, "model_infer_request")
    for i in range(30):
        with pytest.raises(grpc.RpcError):
            client.infer_grpc(f"no-such-model-{i}", {"ohlcv": WINDOW})
        with pytest.raises(RestError):
            client.infer_rest(f"nor-this-{i}", {"ohlcv": WINDOW})
        with pytest.raises(grpc.RpcError):
            request = build_grpc_request("baseline", {"ohlcv": WINDOW})
            request.model_version = f"v{i}"
            client._stub.ModelInfer(request, timeout=30)
    assert series(mlserver, "model_infer_request") == before


def health_gauge(server, arm: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "market_ab_router_arm_healthy" and s.labels == {"router": "thompson-router", "arm": arm})


def test_the_health_gauge_comes_back_when_a_cooldown_ends_without_any_request(server):
    mlserver, client = server
    decision = client.infer_grpc("thompson-router", {"ohlcv": WINDOW}, request_id="cooldown-1")
    arm = decision["arm"][0]
    feedback = {"decision_id": np.array(["cooldown-1"], dtype=object), "reward": np.array([0.0]),
                "error": np.array([1], np.int32)}
    assert client.infer_grpc("thompson-router", feedback)["status"] == ["applied"]
    assert health_gauge(mlserver, arm) == 0.0  # one error takes it out here
    deadline = time.monotonic() + 20  # the cooldown is 1 s; no request is sent meanwhile
    while health_gauge(mlserver, arm) == 0.0:
        assert time.monotonic() < deadline, "the gauge stayed 0 after the cooldown"
        time.sleep(0.1)


def test_a_model_that_is_loading_answers_retryable(tmp_path):
    """A request to a model still loading got 400 (a client error, not to retry); now 503 / UNAVAILABLE."""
    repository = copy_repository(tmp_path / "models", ["baseline"])
    slow = repository / "slow"
    slow.mkdir()
    gate = tmp_path / "let-it-load"
    (slow / "model-settings.json").write_text(json.dumps({
        "name": "slow", "implementation": "tests.slow_runtime.SlowRuntime",
        "parameters": {"extra": {"gate": str(gate)}}}))
    server = MLServerProcess(repository, env={"PYTHONPATH": str(REPO)})  # so that MLServer finds tests.slow_runtime
    server.start(wait_for=["baseline"])
    try:
        client = InferenceClient(server.grpc_address, server.http_url)
        error = grpc_error(client, build_grpc_request("slow", {"ohlcv": WINDOW}))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "not ready" in error.details()
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.request("POST", "/v2/models/slow/infer", body=json.dumps({"inputs": []}),
                           headers={"Content-Type": "application/json"})
        assert connection.getresponse().status == 503
        gate.touch()
        server.wait_until_ready()
        assert client.infer_grpc("slow", {"ohlcv": WINDOW})["ohlcv"].shape == WINDOW.shape
        client.close()
    finally:
        server.stop()
