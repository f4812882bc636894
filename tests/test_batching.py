"""MLServer adaptive batching configured through parameters.extra (the only place Seldon's agent keeps it).

Concurrent requests are released together by a barrier, and the batch window (5 s) is far longer than
they need to arrive, so a batch fills by size, not by luck of timing.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from loadtest.client import InferenceClient
from local_seldon.mlserver_process import MLServerProcess
from training.dataset import ohlcv_windows

from .conftest import MIN_WINDOW, copy_repository
from .test_metrics import scrape, value
from .test_serving import in_process

BATCH = 8


def batched_repository(tmp_path, **extra):
    repository = copy_repository(tmp_path / "models", ["baseline"])
    settings_path = repository / "baseline" / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    settings["parameters"]["extra"].update(extra)
    settings_path.write_text(json.dumps(settings))
    return repository


def send_together(client, requests: list[np.ndarray]) -> list:
    """One thread per request, all released at once; each answer is the probabilities or the gRPC error."""
    barrier = threading.Barrier(len(requests))

    def send(ohlcv):
        barrier.wait(timeout=30)
        try:
            return client.infer_grpc("baseline", {"ohlcv": ohlcv})["probability"]
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_concurrent_requests_are_merged_and_answered_individually(tmp_path, artifacts, heldout):
    # Seldon writes Model spec.parameters into extra as strings.
    repository = batched_repository(tmp_path, max_batch_size=str(BATCH), max_batch_time="5")
    windows = np.concatenate([heldout["sp500"][0], heldout["goog"][0]])[:BATCH]

    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address)
        answers = send_together(client, [w[None] for w in windows])
        samples, _ = scrape(server)
        client.close()

    np.testing.assert_allclose(np.concatenate(answers), in_process(artifacts["baseline"], windows), atol=1e-5)
    assert value(samples, "market_ab_lstm_windows_per_request_sum", model="baseline") == BATCH
    assert value(samples, "market_ab_lstm_windows_per_request_count", model="baseline") < BATCH, "nothing merged"


@pytest.mark.parametrize("workers", [0, 2])
def test_windows_of_another_length_are_refused_not_mixed_up(tmp_path, artifacts, heldout, dataset, workers):
    """MLServer merges a batch under its first request's shape. In-process the runtime refuses another length
    before the request joins a batch; with parallel workers MLServer batches in its main process, where the
    runtime cannot look, and a batch that mixes lengths fails as a whole with 400. Never a wrong answer."""
    repository = batched_repository(tmp_path, max_batch_size=BATCH, max_batch_time=5)
    windows, index = heldout["nasdaq"]
    longer = ohlcv_windows("nasdaq", dataset["test"].ohlcv_end[index], MIN_WINDOW + 17)
    requests = [(windows if i % 2 else longer)[i:i + 1] for i in range(BATCH)]

    with MLServerProcess(repository, parallel_workers=workers) as server:
        client = InferenceClient(server.grpc_address)
        answers = send_together(client, requests)
        client.close()

    expected = in_process(artifacts["baseline"], windows[:BATCH])
    refused = 0
    for i, answer in enumerate(answers):
        if isinstance(answer, grpc.RpcError):
            assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT, answer.details()
            details = answer.details()
            assert f"windows of exactly {MIN_WINDOW} rows" in details or "does not fit shape" in details, details
            refused += 1
        else:
            assert i % 2, "a window of another length was answered"
            np.testing.assert_allclose(answer, expected[i:i + 1], atol=1e-5)
    if workers == 0:
        assert refused == BATCH // 2  # exactly the other-length windows
    else:
        assert refused >= BATCH // 2
