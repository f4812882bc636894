"""Concurrent requests share forward passes (runtimes/batching.py), whatever their input kind and window length.

Concurrent requests are released together by a barrier, and the batch wait (5 s) is far longer than they need to
arrive, so a batch fills by size, not by luck of timing.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MIN_WINDOW, copy_repository
from .test_metrics import scrape, value
from .test_serving import in_process

BATCH = 8


def repository_with(tmp_path, extra=None, **top_level):
    repository = copy_repository(tmp_path / "models", ["baseline"])
    settings_path = repository / "baseline" / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    settings["parameters"]["extra"].update(extra or {})
    settings.update(top_level)
    settings_path.write_text(json.dumps(settings))
    return repository


def send_together(client, requests: list[dict]) -> list:
    """One thread per request, all released at once; each answer is the probabilities or the gRPC error."""
    barrier = threading.Barrier(len(requests))

    def send(inputs):
        barrier.wait(timeout=30)
        try:
            return client.infer_grpc("baseline", inputs)["probability"]
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


@pytest.mark.parametrize("workers", [0, 2])
def test_mixed_requests_share_forward_passes_and_get_their_own_answers(tmp_path, artifacts, heldout, dataset,
                                                                       workers):
    """Windows of two lengths and the `features` input, in one batch: each request gets exactly its answer.
    (With two workers each worker batches what it receives.)"""
    # Seldon writes Model spec.parameters into extra as strings.
    repository = repository_with(tmp_path, {"batch_windows": str(BATCH), "batch_wait_seconds": "5",
                                            "batch_wait_policy": "fixed"})
    windows, index = heldout["nasdaq"]
    windows = windows[:BATCH]
    longer = ohlcv_windows("nasdaq", dataset["test"].ohlcv_end[index][:BATCH], MIN_WINDOW + 17)
    features = artifacts["baseline"].features_from_ohlcv(windows).astype(np.float32)
    requests = [{"ohlcv": windows[i:i + 1]} if i % 3 == 0 else {"ohlcv": longer[i:i + 1]} if i % 3 == 1
                else {"features": features[i:i + 1]} for i in range(BATCH)]

    with MLServerProcess(repository, parallel_workers=workers) as server:
        client = InferenceClient(server.grpc_address)
        answers = send_together(client, requests)
        samples, _ = scrape(server)
        client.close()

    assert not [a for a in answers if isinstance(a, grpc.RpcError)], answers
    np.testing.assert_allclose(np.concatenate(answers), in_process(artifacts["baseline"], windows), atol=1e-5)
    passes = value(samples, "market_ab_lstm_forward_windows_count", model="baseline")
    assert value(samples, "market_ab_lstm_forward_windows_sum", model="baseline") == BATCH
    assert passes < BATCH, "no forward pass was shared"


def test_no_batching_runs_one_forward_pass_per_request(tmp_path, heldout):
    repository = repository_with(tmp_path, {"batch_windows": 1})
    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address)
        send_together(client, [{"ohlcv": w[None]} for w in heldout["sp500"][0][:4]])
        samples, _ = scrape(server)
        client.close()
    assert value(samples, "market_ab_lstm_forward_windows_count", model="baseline") == 4


def test_mlserver_adaptive_batching_is_refused(tmp_path):
    """MLServer's own batching merges raw requests under the first one's shape: refused at load, with the
    settings to use instead."""
    repository = repository_with(tmp_path, max_batch_size=8, max_batch_time=0.01)
    with pytest.raises(RuntimeError) as error:
        MLServerProcess(repository, ready_timeout=120).start()
    assert "adaptive batching (max_batch_size 8) is not supported" in str(error.value)
    assert "batch_windows" in str(error.value)
