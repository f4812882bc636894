"""Generated requests, good and bad, over REST (JSON and the binary data extension) and gRPC against a real MLServer:
every answer is a success or a client error (bounded here; `python -m seldon_market_ab.loadtest.fuzz` runs 10,000 per
protocol and writes docs/fuzz.json)."""

import json

import pytest

from seldon_market_ab.loadtest import fuzz
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess

from ..conftest import MODELS, REPO


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    windows, features = fuzz.sample_inputs(MODELS)
    repository = fuzz.fuzz_repository(MODELS, tmp_path_factory.mktemp("fuzz") / "models")
    with MLServerProcess(repository, parallel_workers=None) as server:
        tally = fuzz.run(server.grpc_address, "127.0.0.1", server.http_port, windows, features, requests=250)
        labels = fuzz.model_labels(server.metrics_url)
        alive = server._process.poll() is None
    fuzz.fuzz_gateway(MODELS, windows, features, 150, tally, tmp_path_factory.mktemp("fuzz-gateway") / "serve.log")
    return tally, labels, alive


def test_no_request_is_mishandled(fuzzed):
    tally, _, alive = fuzzed
    assert alive
    assert tally.mishandled() == 0, tally.examples
    for protocol in (*fuzz.PROTOCOLS, *(f"gateway-{p}" for p in fuzz.PROTOCOLS)):
        outcomes = fuzz._outcomes(tally, protocol)
        assert outcomes.get(fuzz.OK, 0) > 20 and outcomes.get(fuzz.CLIENT_ERROR, 0) > 20  # both kinds were sent


def test_metric_series_stay_bounded(fuzzed):
    _, labels, _ = fuzzed
    assert labels <= {"baseline", "thompson-router"}, labels


def test_the_stored_fuzz_run_is_a_long_one_with_nothing_mishandled():
    results = json.loads((REPO / "docs" / "fuzz.json").read_text())
    assert results["requests_per_protocol"] >= 10_000
    assert set(results["protocols"]) == {*fuzz.PROTOCOLS, *(f"gateway-{p}" for p in fuzz.PROTOCOLS)}
    assert all(p["mishandled"] == 0 for p in results["protocols"].values())
    assert results["metric_model_labels"]["other"] == []
