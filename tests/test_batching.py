"""MLServer adaptive batching configured through parameters.extra (the only place Seldon's agent keeps it)."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from localstack.client import InferenceClient
from localstack.mlserver_process import MLServerProcess

from .conftest import copy_repository
from .test_metrics import scrape, value
from .test_serving import in_process


def test_concurrent_requests_are_merged_and_answered_individually(tmp_path, artifacts, heldout):
    repository = copy_repository(tmp_path / "models", ["baseline"])
    settings_path = repository / "baseline" / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    # Seldon writes Model spec.parameters into extra as strings.
    settings["parameters"]["extra"].update({"max_batch_size": "8", "max_batch_time": "0.5"})
    settings_path.write_text(json.dumps(settings))
    windows = np.concatenate([heldout["sp500"][0], heldout["goog"][0]])[:8]

    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda w: client.infer_grpc("baseline", {"ohlcv": w[None]}), windows))
        samples, _ = scrape(server)
        client.close()

    served = np.concatenate([a["probability"] for a in answers])
    np.testing.assert_allclose(served, in_process(artifacts["baseline"], windows), atol=1e-5)
    assert all(a["model"] == ["baseline:1"] for a in answers)
    assert value(samples, "market_ab_lstm_windows_per_request_sum", model="baseline") == 8
    assert value(samples, "market_ab_lstm_windows_per_request_count", model="baseline") < 8, "nothing was merged"


def test_windows_of_another_length_are_refused_not_mixed_up(tmp_path, artifacts, heldout, dataset):
    """MLServer merges a batch under its first request's shape; the runtime refuses other lengths instead."""
    import grpc

    from runtimes.training.dataset import ohlcv_windows

    repository = copy_repository(tmp_path / "models", ["baseline"])
    settings_path = repository / "baseline" / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    settings["parameters"]["extra"].update({"max_batch_size": 8, "max_batch_time": 0.5})
    settings_path.write_text(json.dumps(settings))
    windows, index = heldout["nasdaq"]
    longer = ohlcv_windows("nasdaq", dataset["test"].ohlcv_end[index], 150)

    def send(i):
        try:
            return client.infer_grpc("baseline", {"ohlcv": (windows if i % 2 else longer)[i:i + 1]})["probability"]
        except grpc.RpcError as error:
            return error

    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(8)))
        client.close()
    expected = in_process(artifacts["baseline"], windows[:8])
    for i, answer in enumerate(answers):
        if i % 2:
            np.testing.assert_allclose(answer, expected[i:i + 1], atol=1e-5)
        else:
            assert answer.code().name == "INVALID_ARGUMENT" and "[batch, 133, ...]" in answer.details()
