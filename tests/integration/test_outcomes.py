"""The ``outcomes`` model in a real MLServer, over REST and gRPC, in-process and with a parallel worker: statuses per
row, counters on /metrics equal to what was recorded, and bad input refused with 400 / INVALID_ARGUMENT naming what
was expected."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from seldon_market_ab.client import InferenceClient, RestError
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.routers.stores import open_store

from ..conftest import copy_repository, set_extra
from .test_metrics import scrape, value

ARMS = ("baseline", "enhanced", "faulty")


@pytest.fixture(scope="module", params=[0, 1], ids=["workers-0", "workers-1"])
def server(request, tmp_path_factory):
    """The outcomes model with three arms (one not a shipped model: arms are whatever the settings say)."""
    repository = tmp_path_factory.mktemp(f"outcomes-w{request.param}")
    set_extra(copy_repository(repository, ["outcomes"]) / "outcomes", arms=",".join(ARMS))
    state = tmp_path_factory.mktemp("state")
    with MLServerProcess(repository, parallel_workers=request.param, state_dir=state) as process:
        client = InferenceClient(process.grpc_address, process.http_url)
        yield process, client, state
        client.close()


def send(client, protocol, ids, models, correct, returns=None):
    if protocol == "grpc":
        return client.send_outcomes(ids, models, correct, returns, protocol="grpc")
    inputs = {"request_id": np.array(ids, dtype=object), "model": np.array(models, dtype=object),
              "correct": np.asarray(correct, dtype=np.int32)}
    if returns is not None:
        inputs["return"] = np.asarray(returns, dtype=np.float64)
    return list(client.infer_rest("outcomes", inputs)["status"])


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_each_row_gets_its_status_and_recorded_rows_are_counted(server, protocol):
    process, client, state = server
    before, _ = scrape(process)
    tag = f"{protocol}-{process.http_url.rsplit(':', 1)[1]}"
    ids = [f"{tag}-{i}" for i in range(6)]
    statuses = send(client, protocol, ids, ["baseline", "enhanced:1", "baseline", "robust", "faulty", "baseline"],
                    [1, 0, 1, 1, 0, 0], [0.01, -0.02, 0.03, 0.5, -0.04, 0.0])
    assert statuses == ["recorded", "recorded", "recorded", "unknown_model", "recorded", "recorded"]
    # a retry of the same rows, and the same ids with other values
    assert send(client, protocol, ids[:2], ["baseline", "enhanced"], [1, 0], [0.01, -0.02]) == ["duplicate"] * 2
    assert send(client, protocol, ids[2:3], ["baseline"], [0], [0.03]) == ["conflict"]
    after, text = scrape(process)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("market_ab_outcomes_total", model="baseline") == 3
    assert delta("market_ab_outcomes_correct_total", model="baseline") == 2
    assert delta("market_ab_outcome_return_sum", model="baseline") == pytest.approx(0.04)
    assert delta("market_ab_outcomes_total", model="enhanced") == 1
    assert delta("market_ab_outcomes_correct_total", model="enhanced") == 0
    assert delta("market_ab_outcome_return_sum", model="faulty") == pytest.approx(-0.04)
    assert delta("market_ab_outcome_rows_total", status="unknown_model") == 1
    assert delta("market_ab_outcome_rows_total", status="duplicate") == 2
    assert delta("market_ab_outcome_rows_total", status="conflict") == 1
    assert not any(dict(labels).get("model") == "robust" for _, labels in after), "a label from a request"
    assert "# TYPE market_ab_outcomes_total counter" in text

    store = open_store("sqlite:///outcomes.db", "outcomes", state)  # acknowledged means committed
    try:
        assert store.outcome(ids[2]).correct is True and store.outcome(ids[3]) is None
    finally:
        store.close()


def test_without_returns_only_counts_change(server):
    process, client, _ = server
    before, _ = scrape(process)
    assert client.send_outcomes(["no-return-1"], ["faulty"], [1]) == ["recorded"]
    after, _ = scrape(process)
    assert value(after, "market_ab_outcomes_correct_total", model="faulty") - \
        value(before, "market_ab_outcomes_correct_total", model="faulty") == 1
    assert value(after, "market_ab_outcome_return_sum", model="faulty") == \
        value(before, "market_ab_outcome_return_sum", model="faulty")


BAD = [
    ({"model": ["baseline"], "correct": [1]}, "input 'request_id' BYTES [n] is missing"),
    ({"request_id": ["a"], "correct": [1]}, "input 'model' BYTES [n] is missing"),
    ({"request_id": ["a"], "model": ["baseline"]}, "input 'correct'"),
    ({"request_id": ["a", "b"], "model": ["baseline"], "correct": [1, 1]}, "one per request_id"),
    ({"request_id": ["a"], "model": ["baseline"], "correct": [2]}, "must hold 1 (the predicted direction was right)"),
    ({"request_id": ["a"], "model": ["baseline"], "correct": [1], "return": [float("nan")]}, "NaN or Inf"),
    ({"request_id": ["a"], "model": ["baseline"], "correct": [1], "return": [0.1, 0.2]}, "one per request_id"),
    ({"request_id": ["has space"], "model": ["baseline"], "correct": [1]}, "request ids are 1 to 128 characters"),
    ({"request_id": ["a"], "model": [""], "correct": [1]}, "no empty string"),
]


def _inputs(fields: dict) -> dict:
    out = {}
    for name, values in fields.items():
        kind = {"request_id": object, "model": object, "correct": np.int32, "return": np.float64}[name]
        out[name] = np.array(values, dtype=kind)
    return out


@pytest.mark.parametrize(("fields", "expected"), BAD, ids=[e[:30] for _, e in BAD])
def test_bad_input_is_a_client_error_naming_what_was_expected(server, fields, expected):
    _, client, _ = server
    with pytest.raises(grpc.RpcError) as error:
        client.infer_grpc("outcomes", _inputs(fields))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in error.value.details()
    with pytest.raises(RestError) as error:
        client.infer_rest("outcomes", _inputs(fields))
    assert error.value.status == 400 and expected in json.loads(error.value.message)["error"]


def test_wrong_datatypes_are_refused(server):
    process, _, _ = server
    body = {"inputs": [{"name": "request_id", "datatype": "BYTES", "shape": [1], "data": ["x"]},
                       {"name": "model", "datatype": "BYTES", "shape": [1], "data": ["baseline"]},
                       {"name": "correct", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    request = urllib.request.Request(f"{process.http_url}/v2/models/outcomes/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    message = error.value.read().decode()
    assert error.value.code == 400 and "'correct' must be INT32 or INT64 or BOOL, got FP32" in message
