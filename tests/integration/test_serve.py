"""``market-ab serve`` against real MLServer models, over REST and gRPC: every Seldon construct the gateway claims.

One ``market-ab serve`` runs the dev overlay (the real routers, LSTMs and drift detector) plus the test manifests
below, which use echo models (each answers with its inputs) so that which step ran, and on which tensors, shows in
the answer. A gated model holds a side step's batch for as long as a test wants.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc
from scipy import stats

from seldon_market_ab.client import InferenceClient, RestError, build_grpc_request, decode_outputs, json_body
from seldon_market_ab.local_seldon.mlserver_process import free_port, process_tree
from seldon_market_ab.local_seldon.serve import LAUNCHED_LINE
from seldon_market_ab.local_seldon.serve_process import ServeProcess
from seldon_market_ab.mlserver_compat import response_from_grpc

from ..conftest import MARKET_AB, MODELS, REPO, running, triton_body

ECHOS = ("echo-a", "echo-b", "echo-c", "echo-d", "echo-e", "echo-f")
TEST_MANIFESTS = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata: {{name: gated}}
spec:
  storageUri: gs://unused/gated
  requirements: [mlserver, python]
  parameters:
  - {{name: gate, value: "{gate}"}}
---
# routing by tensors: a step runs only when its inputs exist
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {{name: routing}}
spec:
  steps:
  - {{name: echo-a, inputs: [routing.inputs.left]}}
  - {{name: echo-b, inputs: [routing.inputs.right]}}
  - name: echo-c
    inputs: [echo-a.outputs.left, echo-b.outputs.right]
    tensorMap: {{echo-a.outputs.left: l, echo-b.outputs.right: r}}
  - {{name: echo-d, inputs: [echo-a, echo-b], inputsJoinType: outer}}
  - {{name: echo-e, inputs: [routing.inputs.left], triggers: [routing.inputs.go]}}
  output:
    steps: [echo-c, echo-d, echo-e]
    stepsJoin: outer
    tensorMap: {{echo-c.outputs.l: c_l, echo-c.outputs.r: c_r, echo-d.outputs.left: d_left,
                echo-d.outputs.right: d_right, echo-e.outputs.left: e_left}}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {{name: first}}
spec:
  steps:
  - {{name: echo-a, inputs: [first.inputs.left]}}
  - {{name: echo-b, inputs: [first.inputs.right]}}
  output: {{steps: [echo-a, echo-b], stepsJoin: any}}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {{name: both}}
spec:
  steps:
  - {{name: echo-a, inputs: [both.inputs.left]}}
  - {{name: echo-b, inputs: [both.inputs.right]}}
  output: {{steps: [echo-a, echo-b]}}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {{name: side}}
spec:
  steps:
  - {{name: echo-a}}
  - {{name: gated, inputs: [side.inputs], batch: {{size: 2}}}}
  output: {{steps: [echo-a]}}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {{name: decide}}
spec:
  steps: [{{name: thompson-router}}]
  output: {{steps: [thompson-router]}}
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Experiment
metadata: {{name: pipes}}
spec:
  resourceType: pipeline
  candidates: [{{name: first, weight: 50}}, {{name: both, weight: 50}}]
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Experiment
metadata: {{name: shadow}}
spec:
  default: echo-f
  candidates: [{{name: echo-f, weight: 100}}]
  mirror: {{name: baseline, percent: 100}}
"""
GRPC_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INTERNAL: 500}


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    repository = folder / "models"
    repository.mkdir()
    for entry in MODELS.iterdir():
        (repository / entry.name).symlink_to(entry)
    for name in ECHOS + ("gated",):
        (repository / name).mkdir()
        implementation = ("tests.slow_runtime.GatedRuntime" if name == "gated"
                          else "seldon_market_ab.loadtest.echo.EchoRuntime")
        (repository / name / "model-settings.json").write_text(json.dumps(
            {"name": name, "implementation": implementation, "parameters": {"version": "1"}}))
    gate = folder / "gate"
    manifests = folder / "semantics.yaml"
    manifests.write_text(TEST_MANIFESTS.format(gate=gate))
    process = ServeProcess(repository, [REPO / "manifests/overlays/dev", manifests], seed=7,
                           log_path=folder / "serve.log", env={"PYTHONPATH": str(REPO)})
    with process:
        process.gate = gate
        yield process


class Door:
    """One transport's view of the gateway: ``infer`` answers (status, outputs, headers, message)."""

    def __init__(self, serve: ServeProcess, transport: str):
        self.serve, self.transport = serve, transport
        self.stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(serve.grpc_address))

    def infer(self, target: str | None, inputs: dict, request_id: str | None = None, headers: dict | None = None):
        headers = {**({"seldon-model": target} if target else {}), **(headers or {})}
        if self.transport == "rest":
            body = json_body(inputs, request_id)
            return rest_post(f"{self.serve.http_url}/v2/models/any/infer", body, headers)
        if self.transport == "binary":
            return binary_post(f"{self.serve.http_url}/v2/models/any/infer", inputs, request_id, headers)
        request = build_grpc_request("any", inputs, request_id)
        try:
            response, call = self.stub.ModelInfer.with_call(request, metadata=tuple(headers.items()), timeout=30)
        except grpc.RpcError as error:
            return GRPC_STATUS.get(error.code(), error.code()), {}, {}, error.details()
        return 200, decode_outputs(response_from_grpc(response)), dict(call.initial_metadata()), ""


def rest_post(url: str, body: bytes, headers: dict):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
            return response.status, decode_outputs_json(answer), dict(response.headers), ""
    except urllib.error.HTTPError as error:
        return error.code, {}, dict(error.headers), json.loads(error.read())["error"]


def binary_post(url: str, inputs: dict, request_id: str | None, headers: dict):
    """REST with the binary data extension, the body built and the answer read by tritonclient (a third party's
    encoder: every input as bytes, every output asked for as bytes)."""
    import tritonclient.http as triton

    body, length = triton_body(inputs, request_id=request_id or "")
    request = urllib.request.Request(url, data=body, headers={"Inference-Header-Content-Length": str(length),
                                                              **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            length = response.headers.get("Inference-Header-Content-Length")
            result = triton.InferResult.from_response_body(response.read(), header_length=int(length))
            outputs = {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}
            outputs = {n: [v.decode() for v in a.ravel()] if a.dtype == object else a for n, a in outputs.items()}
            return response.status, outputs, dict(response.headers), ""
    except urllib.error.HTTPError as error:
        return error.code, {}, dict(error.headers), json.loads(error.read())["error"]


def decode_outputs_json(answer: dict) -> dict:
    from mlserver.types import InferenceResponse

    return decode_outputs(InferenceResponse.model_validate(answer))


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(serve: ServeProcess, name: str, **labels) -> float:
    text = get(f"{serve.http_url}/metrics")[1]
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if found and all(f'{k}="{v}"' in found[1] for k, v in labels.items()):
            return float(found[2])
    return 0.0


def wait_for_metric(serve: ServeProcess, value: float, name: str, timeout: float = 60.0, **labels) -> float:
    """The metric once it reaches ``value`` (background work: mirrors and side steps), or whatever it is after
    ``timeout`` seconds, for the assertion to report."""
    deadline = time.monotonic() + timeout
    while (seen := metric(serve, name, **labels)) < value and time.monotonic() < deadline:
        time.sleep(0.1)
    return seen


@pytest.fixture(params=["rest", "grpc", "binary"])
def door(request, serve):
    return Door(serve, request.param)


@pytest.fixture(scope="module")
def window(heldout):
    return heldout["sp500"][0][:1].astype(np.float32)


def direct(serve: ServeProcess, model: str, inputs: dict) -> dict:
    """The same model called on MLServer itself, not through the gateway."""
    body = json_body(inputs)
    return rest_post(f"{serve.mlserver_http_url}/v2/models/{model}/infer", body, {})[1]


def vector(n: int, start: float = 0.0) -> np.ndarray:
    return (np.arange(n, dtype=np.float32) + start)[None]


# plain models, pipelines of real models ---------------------------------------------------------------------------

def test_a_plain_model_passes_straight_through(door, serve, window):
    status, outputs, _, _ = door.infer("lightweight", {"ohlcv": window})
    assert status == 200 and outputs["model"] == ["lightweight:1"]
    assert outputs["probability"] == pytest.approx(direct(serve, "lightweight", {"ohlcv": window})["probability"])


@pytest.mark.parametrize("pipeline, arms", [("mab", ("baseline", "enhanced", "lightweight")),
                                            ("contextual", ("robust", "aggressive", "conservative", "baseline"))])
def test_a_router_pipeline_runs_one_arm_and_answers_with_it(door, serve, window, pipeline, arms):
    rid = f"{pipeline}-{door.transport}-arm"
    status, outputs, headers, _ = door.infer(f"{pipeline}.pipeline", {"ohlcv": window}, rid)
    assert status == 200, outputs
    assert set(outputs) == {"probability", "direction", "model"}  # the arm's answer only
    arm = outputs["model"][0].split(":")[0]
    assert arm in arms
    assert outputs["probability"] == pytest.approx(direct(serve, arm, {"ohlcv": window})["probability"])
    assert headers["x-request-id"] == rid


# routing by tensors, joins, tensorMap, triggers -------------------------------------------------------------------

@pytest.mark.parametrize("sent, expected", [
    (("left",), {"d_left"}),  # only echo-a runs: echo-c (inner) waits for both, echo-d (outer) takes one
    (("right",), {"d_right"}),
    (("left", "right"), {"c_l", "c_r", "d_left", "d_right"}),  # tensorMap renames what echo-c receives
    (("left", "go"), {"d_left", "e_left"}),  # the trigger lets echo-e run; `go` itself is not passed on
])
def test_steps_run_on_the_tensors_they_take(door, sent, expected):
    inputs = {name: vector(3, i * 10) for i, name in enumerate(sent)}
    status, outputs, _, message = door.infer("routing.pipeline", inputs)
    assert status == 200, message
    assert set(outputs) == expected
    by_source = {"left": inputs.get("left"), "right": inputs.get("right")}
    for name, value in outputs.items():
        source = "left" if name.endswith(("left", "_l")) else "right"
        np.testing.assert_array_equal(value, by_source[source])


def test_typed_grpc_contents_get_typed_answers_and_raw_contents_raw_ones(serve, window):
    stub = Door(serve, "grpc").stub
    for raw in (False, True):
        request = build_grpc_request("mab", {"ohlcv": window}, raw=raw)
        response = stub.ModelInfer(request, metadata=(("seldon-model", "mab.pipeline"),), timeout=30)
        assert bool(response.raw_output_contents) == raw
        outputs = decode_outputs(response_from_grpc(response))
        arm = outputs["model"][0].split(":")[0]
        assert outputs["probability"] == pytest.approx(direct(serve, arm, {"ohlcv": window})["probability"])


def test_output_joins_any_takes_the_first_present_and_inner_needs_all(door):
    status, outputs, _, _ = door.infer("first.pipeline", {"left": vector(2), "right": vector(2, 5)})
    assert status == 200 and set(outputs) == {"left"}
    status, outputs, _, _ = door.infer("first.pipeline", {"right": vector(2, 5)})
    assert status == 200 and set(outputs) == {"right"}
    status, outputs, _, _ = door.infer("both.pipeline", {"left": vector(2), "right": vector(2, 5)})
    assert status == 200 and set(outputs) == {"left", "right"}


def test_a_pipeline_with_no_output_says_which_steps_ran(door):
    """The request lacked what the output needs: the client's mistake (it once answered 500; Seldon never answers)."""
    status, _, _, message = door.infer("both.pipeline", {"left": vector(2)})
    assert status == 400
    assert "produced no output" in message and "echo-a" in message


@pytest.mark.parametrize("pipeline", ["mab", "contextual"])
def test_a_router_message_sent_to_a_pipeline_is_a_client_error(serve, pipeline):
    """A health message reaches the pipeline's router, which answers it without choosing an arm (found by the fuzz
    suite: it was a 500). Over gRPC as typed contents: the protocol takes raw contents for every input or none."""
    message = {"arm": np.array(["baseline"], dtype=object), "healthy": np.array([1], np.int32)}
    for transport in ("rest", "binary"):
        status, _, _, error = Door(serve, transport).infer(f"{pipeline}.pipeline", message)
        assert status == 400 and "produced no output" in error, (transport, error)
    with pytest.raises(grpc.RpcError) as caught:
        Door(serve, "grpc").stub.ModelInfer(build_grpc_request("any", message, raw=False), timeout=30,
                                            metadata=(("seldon-model", f"{pipeline}.pipeline"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "produced no output" in caught.value.details()


def test_a_failing_step_keeps_its_status_and_is_named(door, window):
    status, _, _, message = door.infer("mab.pipeline", {"ohlcv": window[:, :5]})
    assert status == 400
    assert "step 'thompson-router'" in message and "at least" in message


# request ids ------------------------------------------------------------------------------------------------------

def test_the_request_id_is_the_routers_decision_id_and_feedback_finds_it(door, window):
    rid = f"decision-{door.transport}"
    status, outputs, _, _ = door.infer("decide.pipeline", {"ohlcv": window}, rid)
    assert status == 200 and outputs["decision_id"] == [rid]
    by_header = f"header-{door.transport}"
    status, outputs, headers, _ = door.infer("decide.pipeline", {"ohlcv": window}, headers={"x-request-id": by_header})
    assert outputs["decision_id"] == [by_header] and headers["x-request-id"] == by_header
    # feedback goes through the same address, to the router as a plain model
    status, outputs, _, _ = door.infer("thompson-router", {"decision_id": np.array([rid, by_header, "never-made"]),
                                                           "reward": np.array([1.0, 0.0, 1.0])})
    assert status == 200 and outputs["status"] == ["applied", "applied", "unknown"]


def test_the_request_id_header_wins_for_plain_models_too(door, window):
    """A plain model sees the same id as a pipeline step would: the header's, over the body's."""
    rid = f"plain-{door.transport}"
    status, outputs, headers, _ = door.infer("thompson-router", {"ohlcv": window}, request_id="body-id",
                                             headers={"x-request-id": rid})
    assert status == 200 and outputs["decision_id"] == [rid] and headers["x-request-id"] == rid


def test_integers_out_of_range_are_client_errors(serve):
    body = json.dumps({"inputs": [{"name": "left", "datatype": "INT64", "shape": [1],
                                   "data": [9223372036854775808]}]}).encode()
    status, _, _, message = rest_post(f"{serve.http_url}/v2/pipelines/first/infer", body,
                                      {"seldon-model": "first.pipeline"})
    assert status == 400 and "range" in message


# experiments ------------------------------------------------------------------------------------------------------

def test_the_experiment_splits_by_weight_and_says_where_it_went(serve, window):
    door = Door(serve, "rest")
    answers = [door.infer("ab-test.experiment", {"ohlcv": window}) for _ in range(300)]
    routes = [headers["x-seldon-route"] for _, _, headers, _ in answers]
    # the header names the candidate that answered
    assert all(f":{outputs['model'][0].split(':')[0]}_1:" == route
               for (_, outputs, _, _), route in zip(answers, routes, strict=True))
    enhanced = routes.count(":enhanced_1:")
    assert set(routes) == {":baseline_1:", ":enhanced_1:"}
    low, high = stats.binom.interval(0.999, len(routes), 0.3)  # 30 of 70 + 30
    assert low <= enhanced <= high, f"{enhanced} of {len(routes)} to enhanced"


def test_the_default_model_is_split_too(door, window):
    answers = [door.infer("baseline", {"ohlcv": window}) for _ in range(30)]
    assert {headers.get("x-seldon-route") for _, _, headers, _ in answers} == {":baseline_1:", ":enhanced_1:"}
    assert all(headers["x-seldon-route"] == f":{outputs['model'][0].split(':')[0]}_1:"
               for _, outputs, headers, _ in answers)


def test_a_client_that_sends_the_route_back_sticks_to_its_candidate(door, window):
    for _ in range(20):
        status, outputs, headers, _ = door.infer("ab-test.experiment", {"ohlcv": window},
                                                 headers={"x-seldon-route": ":enhanced_1:"})
        assert status == 200 and outputs["model"] == ["enhanced:1"] and headers["x-seldon-route"] == ":enhanced_1:"


def test_an_experiment_between_pipelines_runs_the_chosen_pipeline(door):
    inputs = {"left": vector(2), "right": vector(2, 5)}
    _, outputs, headers, _ = door.infer("pipes.experiment", inputs, headers={"x-seldon-route": ":both.pipeline:"})
    assert set(outputs) == {"left", "right"} and headers["x-seldon-route"] == ":both.pipeline:"
    _, outputs, headers, _ = door.infer("pipes.experiment", inputs, headers={"x-seldon-route": ":first.pipeline:"})
    assert set(outputs) == {"left"} and headers["x-seldon-route"] == ":first.pipeline:"


def test_the_mirror_gets_a_copy_and_its_failure_stays_invisible(door, serve, window):
    answered = metric(serve, "market_ab_gateway_mirror_requests_total", experiment="ab-test", outcome="answered")
    for _ in range(5):
        assert door.infer("ab-test.experiment", {"ohlcv": window})[0] == 200
    assert wait_for_metric(serve, answered + 5, "market_ab_gateway_mirror_requests_total", experiment="ab-test",
                           outcome="answered") == answered + 5
    # shadow mirrors to baseline, which cannot take this tensor: the client never sees that
    failed = metric(serve, "market_ab_gateway_mirror_requests_total", experiment="shadow", outcome="failed")
    for _ in range(3):
        status, outputs, _, _ = door.infer("shadow.experiment", {"x": vector(3)})
        assert status == 200 and set(outputs) == {"x"}
    assert wait_for_metric(serve, failed + 3, "market_ab_gateway_mirror_requests_total", experiment="shadow",
                           outcome="failed") == failed + 3


# side steps -------------------------------------------------------------------------------------------------------

def test_a_batched_side_step_never_holds_up_the_response(serve):
    door = Door(serve, "grpc")
    answered = metric(serve, "market_ab_gateway_side_batches_total", pipeline="side", step="gated", outcome="answered")
    assert not serve.gate.exists()
    for i in range(2):  # the second request fills the batch of 2; the gated model holds it until the gate opens
        status, outputs, _, _ = door.infer("side.pipeline", {"left": vector(3, 10 * i)})
        assert status == 200 and set(outputs) == {"left"}
    assert metric(serve, "market_ab_gateway_side_batches_total", pipeline="side", step="gated",
                  outcome="answered") == answered
    serve.gate.touch()
    assert wait_for_metric(serve, answered + 1, "market_ab_gateway_side_batches_total", pipeline="side",
                           step="gated", outcome="answered") == answered + 1
    assert Path(f"{serve.gate}.seen").read_text().splitlines()[-1] == "left:2x3"  # two requests, one batch


def test_the_drift_detector_gets_the_pipeline_inputs_in_batches_of_60(serve, window):
    door = Door(serve, "grpc")
    labels = {"pipeline": "mab", "step": "drift-detector"}
    before = metric(serve, "market_ab_gateway_side_batches_total", outcome="answered", **labels)
    sent = 0
    while metric(serve, "market_ab_gateway_side_batches_total", outcome="answered", **labels) == before \
            and sent < 120:
        assert door.infer("mab.pipeline", {"ohlcv": window})[0] == 200
        sent += 1
    assert wait_for_metric(serve, before + 1, "market_ab_gateway_side_batches_total", outcome="answered",
                           **labels) == before + 1
    assert metric(serve, "market_ab_gateway_side_batches_total", outcome="failed", **labels) == 0


# errors, readiness, metrics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected", [(None, "no 'seldon-model' header"),
                                              ("nope", "not in the model repository"),
                                              ("nope.pipeline", "not deployed"), ("nope.experiment", "not deployed")])
def test_unknown_targets_are_not_found(door, target, expected):
    status, _, _, message = door.infer(target, {"x": vector(2)})
    assert status == 404 and expected in message


def test_malformed_pipeline_requests_are_client_errors(serve):
    status, _, _, message = rest_post(f"{serve.http_url}/v2/pipelines/mab/infer", b'{"inputs": [{"name": "x"}]}',
                                      {"seldon-model": "mab.pipeline"})
    assert status == 400 and "inputs.0" in message
    request = pb.ModelInferRequest(model_name="mab", raw_input_contents=[b"\x00" * 7])
    request.inputs.add(name="ohlcv", datatype="FP32", shape=[1, 3])
    with pytest.raises(grpc.RpcError) as caught:
        Door(serve, "grpc").stub.ModelInfer(request, metadata=(("seldon-model", "mab.pipeline"),), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_gateway_metrics_count_requests_by_target_and_status(serve, window):
    before = metric(serve, "market_ab_gateway_requests_total", target="contextual.pipeline", code="200")
    assert Door(serve, "rest").infer("contextual.pipeline", {"ohlcv": window})[0] == 200
    assert metric(serve, "market_ab_gateway_requests_total", target="contextual.pipeline", code="200") == before + 1


def test_the_gateway_exports_seldons_own_metric_families(serve, window):
    """What Seldon 2.10's agent and pipeline gateway export (scheduler/pkg/metrics/agent.go, gateway.go): a model
    request under the model, a pipeline under the pipeline and each step it ran as a gRPC call, an experiment's request
    under the candidate that answered it, a refused request under its code; the latency histogram without a model
    label, in Seldon's buckets."""
    server = "mlserver-market-ab"  # the manifests' Server

    def model_calls(model, method_type, code):
        return metric(serve, "seldon_model_infer_total", server=server, model=model, model_internal=f"{model}_1",
                      method_type=method_type, code=code)

    def histogram(method, code):
        return metric(serve, "seldon_model_infer_api_seconds_count", server=server, method=method, code=code)

    rest, grpc_door = Door(serve, "rest"), Door(serve, "grpc")
    before = {"rest": model_calls("lightweight", "rest", "200"), "post": histogram("post", "200"),
              "router": model_calls("thompson-router", "grpc", "OK"),
              "pipeline": metric(serve, "seldon_pipeline_infer_total", server="pipeline-gateway", pipeline="mab",
                                 method_type="grpc", code="OK"),
              "bad": model_calls("robust", "grpc", "InvalidArgument")}
    assert rest.infer("lightweight", {"ohlcv": window})[0] == 200
    assert grpc_door.infer("mab.pipeline", {"ohlcv": window})[0] == 200
    assert grpc_door.infer("robust", {"ohlcv": window[:, :5]})[0] != 200
    assert model_calls("lightweight", "rest", "200") == before["rest"] + 1
    assert histogram("post", "200") >= before["post"] + 1
    assert model_calls("thompson-router", "grpc", "OK") == before["router"] + 1  # a pipeline's step
    assert metric(serve, "seldon_pipeline_infer_total", server="pipeline-gateway", pipeline="mab", method_type="grpc",
                  code="OK") == before["pipeline"] + 1
    assert metric(serve, "seldon_pipeline_infer_api_seconds_count", server="pipeline-gateway", pipeline="mab",
                  method="grpc", code="OK") >= 1
    assert model_calls("robust", "grpc", "InvalidArgument") == before["bad"] + 1
    status, _, headers, _ = rest.infer("ab-test.experiment", {"ohlcv": window})
    route = {k.lower(): v for k, v in headers.items()}["x-seldon-route"]
    candidate = route.strip(":").split(":")[-1].rsplit("_", 1)[0]
    assert status == 200 and model_calls(candidate, "rest", "200") >= 1
    text = get(f"{serve.http_url}/metrics")[1]
    buckets = re.findall(r'seldon_model_infer_api_seconds_bucket\{[^}]*le="([^"]+)"', text)
    assert sorted({float(b) for b in buckets if b != "+Inf"}) == [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                                                                    0.75, 1, 2.5, 5, 7.5, 10]
    assert 'model=' not in " ".join(line for line in text.splitlines()
                                    if line.startswith("seldon_model_infer_api_seconds"))


@pytest.mark.parametrize("target", ["lightweight", "mab.pipeline", "ab-test.experiment"])
@pytest.mark.parametrize("request_id", ["\u65e5\u672c", "a b", "x" * 129])
def test_a_request_id_that_cannot_travel_back_is_refused_at_the_door(door, window, target, request_id):
    """The id goes back in a header and in gRPC metadata, which cannot carry every string: 400 / INVALID_ARGUMENT
    before anything runs (gRPC once answered INTERNAL here)."""
    status, _, _, message = door.infer(target, {"ohlcv": window}, request_id=request_id)
    assert status == 400 and "request id" in message and "must be" in message


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_pipeline_request_that_feeds_no_step_is_a_client_error(serve, transport):
    """No input at all: no step can run. The client's mistake (400), not the pipeline's (it once answered 500)."""
    status, _, _, message = Door(serve, transport).infer("mab.pipeline", {})
    assert status == 400 and "ran no step" in message and "thompson-router reads mab.inputs" in message


def test_metadata_of_a_pipeline_is_what_seldons_pipeline_gateway_answers(serve):
    """Seldon 2.10's pipeline gateway has no metadata handler: REST 404, gRPC UNIMPLEMENTED. Ours says where to ask."""
    for path in ("/v2/models/mab", "/v2/pipelines/mab"):
        status, body = get(serve.http_url + path, {"seldon-model": "mab.pipeline"})
        assert status == 404 and "thompson-router" in json.loads(body)["error"]
    with pytest.raises(grpc.RpcError) as error:
        Door(serve, "grpc").stub.ModelMetadata(pb.ModelMetadataRequest(name="mab"),
                                               metadata=(("seldon-model", "mab.pipeline"),), timeout=30)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED and "thompson-router" in error.value.details()
    status, body = get(f"{serve.http_url}/v2/models/pipes", {"seldon-model": "pipes.experiment"})
    assert status == 404 and "is a pipeline" in json.loads(body)["error"]


def test_metadata_of_a_model_experiment_is_its_candidates_and_follows_the_route(serve):
    """As Seldon's Envoy routes it: a candidate answers (here the default, without a draw that would move the seeded
    split), and ``x-seldon-route`` picks the candidate."""
    stub = Door(serve, "grpc").stub
    for route, expected in ((None, "baseline"), (":enhanced_1:", "enhanced"), (":baseline_1:", "baseline")):
        headers = {"seldon-model": "ab-test.experiment", **({"x-seldon-route": route} if route else {})}
        status, body = get(f"{serve.http_url}/v2/models/ab-test", headers)
        assert status == 200 and json.loads(body)["name"] == expected
        answer = stub.ModelMetadata(pb.ModelMetadataRequest(name="ab-test"), metadata=tuple(headers.items()),
                                    timeout=30)
        assert answer.name == expected


def test_ready_only_when_every_model_is(serve):
    stub = Door(serve, "grpc").stub
    assert get(f"{serve.http_url}/v2/health/ready")[0] == 200
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert get(f"{serve.http_url}/v2/pipelines/routing/ready", {"seldon-model": "routing.pipeline"})[0] == 200
    unload = f"{serve.mlserver_http_url}/v2/repository/models/echo-c/unload"
    urllib.request.urlopen(urllib.request.Request(unload, data=b"", method="POST"), timeout=30).read()
    try:
        status, body = get(f"{serve.http_url}/v2/health/ready")
        assert status == 503 and "echo-c" in body
        assert not stub.ServerReady(pb.ServerReadyRequest()).ready
        assert get(f"{serve.http_url}/v2/pipelines/routing/ready", {"seldon-model": "routing.pipeline"})[0] == 424
        assert not stub.ModelReady(pb.ModelReadyRequest(), metadata=(("seldon-model", "routing.pipeline"),)).ready
        assert get(f"{serve.http_url}/v2/pipelines/first/ready", {"seldon-model": "first.pipeline"})[0] == 200
    finally:
        load = f"{serve.mlserver_http_url}/v2/repository/models/echo-c/load"
        urllib.request.urlopen(urllib.request.Request(load, data=b"", method="POST"), timeout=60).read()
    assert get(f"{serve.http_url}/v2/health/ready")[0] == 200


def test_the_seldon_pages_calling_example_runs_as_written(serve):
    page = (REPO / "docs" / "seldon.md").read_text()
    example = page.split("**Calling it**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    example = example.replace("http://127.0.0.1:9000", serve.http_url).replace("127.0.0.1:9001", serve.grpc_address)
    scope: dict = {}
    exec(compile(example, "docs/seldon.md", "exec"), scope)  # noqa: S102 - our own docs' example
    assert scope["by_rest"]["model"][0].split(":")[0] in ("baseline", "enhanced", "lightweight")  # ab-test, last
    assert scope["feedback"]["status"] == ["applied", "applied"]


def test_the_readmes_tritonclient_example_runs_as_written(serve):
    readme = (REPO / "README.md").read_text()
    example = readme.split("**Calling it with tritonclient**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(example.replace("127.0.0.1:9000", serve.http_url.removeprefix("http://")), "README.md", "exec"),
         scope)  # noqa: S102 - our own README's example
    assert scope["answer"].as_numpy("model")[0].decode().split(":")[0] in ("baseline", "enhanced", "lightweight")
    assert scope["status"].as_numpy("status").tolist() == [b"applied"]
    assert "binary_data_size" in scope["answer"].get_response()["outputs"][0]["parameters"]  # asked for, by default


def test_the_client_pages_examples_run_as_written(serve, window, tmp_path):
    """docs/clients.md, each example in a process of its own, as a user runs it (tritonclient's gRPC module cannot
    share a process with MLServer's protobuf types, which this one has loaded): tritonclient in the serving venv,
    KServe's SDK in its own (``make clients``)."""
    text = (REPO / "docs" / "clients.md").read_text()
    triton_grpc, kserve_rest = (block.split("```", 1)[0] for block in text.split("```python\n")[1:])
    clients = REPO / ".venv-clients" / "bin" / "python"
    assert clients.exists(), "`make clients` builds .venv-clients, where KServe's SDK lives"
    np.save(tmp_path / "window.npy", window)
    outputs = {}
    for name, python, example in (("triton", sys.executable, triton_grpc.replace("127.0.0.1:9001", serve.grpc_address)),
                                  ("kserve", str(clients), kserve_rest.replace("http://127.0.0.1:9000",
                                                                               serve.http_url))):
        (tmp_path / f"{name}_example.py").write_text(example)  # not kserve.py: it would shadow the package
        done = subprocess.run([python, f"{name}_example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO)} if name == "triton" else None)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        outputs[name] = done.stdout
    assert re.search(r"\[b'(robust|aggressive|conservative|baseline):1'\]", outputs["triton"]), outputs["triton"]
    assert "'regime'" in outputs["triton"]  # the regime router's metadata lists its regime output
    assert re.search(r":(baseline|enhanced)_1:", outputs["kserve"]), outputs["kserve"]


# the client and `market-ab infer` -----------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_client_calls_through_seldons_routing(serve, window, protocol):
    client = InferenceClient(serve.grpc_address, serve.http_url)
    answer = client.infer("mab.pipeline", {"ohlcv": window}, protocol, request_id=f"client-{protocol}")
    assert answer.request_id == f"client-{protocol}" and answer.attempts == 1 and answer.route is None
    assert answer.outputs["model"][0].split(":")[0] in ("baseline", "enhanced", "lightweight")
    first = client.infer("ab-test.experiment", {"ohlcv": window}, protocol)
    assert first.route in (":baseline_1:", ":enhanced_1:")
    for _ in range(5):  # sending the route back sticks
        again = client.infer("ab-test.experiment", {"ohlcv": window}, protocol, route=first.route)
        assert again.route == first.route and again.outputs["model"][0] == first.route.strip(":").replace("_", ":")
    client.close()


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_client_retries_unavailable_and_nothing_else(serve, window, protocol):
    closed = f"127.0.0.1:{free_port()}"
    client = InferenceClient(closed, f"http://{closed}", retries=2, backoff_seconds=0.001)
    with pytest.raises((grpc.RpcError, urllib.error.URLError)) as caught:
        client.infer("mab.pipeline", {"ohlcv": window}, protocol)
    assert client.attempts == 3
    if protocol == "grpc":
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    client = InferenceClient(serve.grpc_address, serve.http_url, retries=2)
    with pytest.raises((grpc.RpcError, RestError)):
        client.infer("mab.pipeline", {"ohlcv": window[:, :5]}, protocol)  # a client error: not retried
    assert client.attempts == 1


def test_market_ab_infer_sends_windows_feedback_and_outcomes(serve):
    def infer(*args):
        return subprocess.run([*MARKET_AB, "--models-dir", str(MODELS), "infer", *args],
                              capture_output=True, text=True, timeout=120)

    done = infer("mab.pipeline", "--grpc", serve.grpc_address, "--windows", "2", "--json")
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == 2 and all(a["outputs"]["model"][0].split(":")[0] in ("baseline", "enhanced", "lightweight")
                                     for a in answers)
    done = infer("thompson-router", "--rest", serve.http_url, "--feedback",
                 *(f"{a['request_id']}=1" for a in answers), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["status"] == ["applied", "applied"]
    first = answers[0]
    model = first["outputs"]["model"][0].split(":")[0]
    done = infer("outcomes", "--grpc", serve.grpc_address, "--outcome", f"{first['request_id']}={model}:1:0.004",
                 f"{answers[1]['request_id']}=nowhere:0:-0.01")
    assert done.returncode == 0, done.stderr
    assert [line.split("status=")[1] for line in done.stdout.splitlines()] == ["recorded", "unknown_model"]
    done = infer("outcomes", "--rest", serve.http_url, "--outcome", f"{first['request_id']}={model}:1:0.004")
    assert done.returncode == 0 and done.stdout.split("status=")[1].strip() == "duplicate", done.stderr
    done = infer("outcomes", "--outcome", "abc=baseline:yes")
    assert done.returncode == 2 and "is not ID=MODEL:CORRECT[:RETURN]" in done.stderr
    done = infer("ab-test.experiment", "--rest", serve.http_url, "--windows", "3", "--sticky")
    assert done.returncode == 0 and len({line.split("route=")[1].split()[0] for line in done.stdout.splitlines()}) == 1
    done = infer("nope.pipeline", "--grpc", serve.grpc_address)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr and "not deployed" in done.stderr


# start and stop ---------------------------------------------------------------------------------------------------

def _echo_repository(folder: Path) -> Path:
    for name in ("echo-a", "echo-b"):
        (folder / name).mkdir(parents=True)
        (folder / name / "model-settings.json").write_text(json.dumps(
            {"name": name, "implementation": "seldon_market_ab.loadtest.echo.EchoRuntime"}))
    return folder


def test_sigterm_stops_the_gateway_and_mlserver(tmp_path):
    manifest = tmp_path / "chain.yaml"
    manifest.write_text("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: chain}\nspec:\n"
                        "  steps: [{name: echo-a}, {name: echo-b, inputs: [echo-a]}]\n  output: {steps: [echo-b]}\n")
    process = ServeProcess(_echo_repository(tmp_path / "models"), [manifest]).start()
    status, outputs, _, _ = Door(process, "grpc").infer("chain.pipeline", {"x": vector(2)})
    assert status == 200 and set(outputs) == {"x"}
    assert process.stop() == 0
    assert process.lines[-1] == "market-ab serve: stopped"
    assert not running(process.mlserver_pid)


def test_sigterm_while_models_load_stops_mlserver_too(tmp_path):
    """MLServer runs in a process group of its own; a SIGTERM before the gateway is up must still stop it."""
    models = _echo_repository(tmp_path / "models")
    (models / "slow").mkdir()
    (models / "slow" / "model-settings.json").write_text(json.dumps({
        "name": "slow", "implementation": "tests.slow_runtime.SlowRuntime",
        "parameters": {"extra": {"gate": str(tmp_path / "never")}}}))  # loads only once a file that never comes exists
    manifest = tmp_path / "p.yaml"
    manifest.write_text("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
                        "spec: {steps: [{name: echo-a}]}\n")
    process = ServeProcess(models, [manifest], env={"PYTHONPATH": str(REPO)})
    command = subprocess.Popen(process.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [command.stdout.readline() for _ in range(2)]
    assert lines[0].startswith("market-ab serve: starting MLServer"), lines
    assert lines[1].startswith(LAUNCHED_LINE), lines  # printed once the MLServer process exists
    mlserver = [pid for pid in process_tree(command.pid) if pid != command.pid]
    assert int(lines[1].rsplit("pid ", 1)[1]) in mlserver
    command.send_signal(signal.SIGTERM)  # the slow model holds MLServer's start-up for a minute
    assert command.wait(timeout=60) == 128 + signal.SIGTERM
    rest = command.stdout.read()
    assert "MLServer ready" not in rest and "market-ab serve: stopped" in rest
    assert not [pid for pid in mlserver if running(pid)]


@pytest.mark.parametrize("manifest, expected", [
    ("spec: {steps: [{name: echo-a, joinWindowMs: 100}]}", "spec.steps[0].joinWindowMs: not implemented"),
    ("spec: {steps: [{name: echo-a}, {name: missing}]}", "does not hold: missing"),
    ("spec: {steps: [{name: echo-a, inputs: [echo-z]}]}", "'echo-z' names no step"),
])
def test_what_would_run_differently_is_refused_at_start(tmp_path, manifest, expected):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p}}\n{manifest}\n")
    process = ServeProcess(_echo_repository(tmp_path / "models"), [path])
    with pytest.raises(RuntimeError, match="exited with 2") as caught:
        process.start()
    assert expected in str(caught.value)
