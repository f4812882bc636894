"""The LSTM with an injected fault (runtimes/faults.py), served by a real MLServer: a seeded share of requests
fails with a message saying so, every answered one waits the added latency, and its answers are the LSTM's."""

import json
import shutil
import time

import grpc
import pytest
from scipy import stats

from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess

from ..conftest import MODELS

FAILURE_RATE, ADDED_MS = 0.3, 25.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repository = tmp_path_factory.mktemp("faults")
    shutil.copytree(MODELS / "baseline", repository / "baseline")
    shutil.copytree(MODELS / "baseline", repository / "faulty")
    settings = json.loads((repository / "faulty" / "model-settings.json").read_text())
    settings.update(name="faulty", implementation="seldon_market_ab.runtimes.faults.FaultyLSTMRuntime")
    settings["parameters"]["extra"].update(added_latency_ms=ADDED_MS, failure_rate=FAILURE_RATE, fault_seed=3)
    (repository / "faulty" / "model-settings.json").write_text(json.dumps(settings))
    with MLServerProcess(repository) as server:
        yield server


def test_a_share_of_requests_fails_and_the_rest_are_late_but_right(served, heldout):
    from seldon_market_ab.client import InferenceClient

    client = InferenceClient(served.grpc_address)
    windows = heldout["sp500"][0]
    failures, latencies, n = 0, [], 80
    for i in range(n):
        window = windows[i % len(windows)][None]
        started = time.perf_counter()
        try:
            answer = client.infer_grpc("faulty", {"ohlcv": window})
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INTERNAL and "injected fault" in error.details()
            failures += 1
            continue
        latencies.append(1000 * (time.perf_counter() - started))
        assert answer["probability"] == pytest.approx(client.infer_grpc("baseline", {"ohlcv": window})["probability"])
    low, high = stats.binom.interval(0.999, n, FAILURE_RATE)
    assert low <= failures <= high
    assert min(latencies) >= ADDED_MS  # a lower bound the sleep guarantees, not a speed claim
    client.close()


def test_a_misspelt_fault_setting_stops_the_load(tmp_path):
    shutil.copytree(MODELS / "baseline", tmp_path / "faulty")
    settings = json.loads((tmp_path / "faulty" / "model-settings.json").read_text())
    settings.update(name="faulty", implementation="seldon_market_ab.runtimes.faults.FaultyLSTMRuntime")
    settings["parameters"]["extra"]["failure_rates"] = 0.5
    (tmp_path / "faulty" / "model-settings.json").write_text(json.dumps(settings))
    with pytest.raises(RuntimeError, match="failure_rates"):
        MLServerProcess(tmp_path).start()
