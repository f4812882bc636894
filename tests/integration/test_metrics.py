"""Our metrics on MLServer's real /metrics endpoint, in-process and with two parallel workers."""

import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from seldon_market_ab.protocol import REJECTION_REASONS


def scrape(server) -> dict[tuple, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(params=[0, 2], ids=["workers-0", "workers-2"])
def server_and_client(request):
    return request.getfixturevalue("served" if request.param == 0 else "served_workers")


def test_prediction_metrics(server_and_client, heldout):
    server, client = server_and_client
    windows = np.concatenate([heldout["sp500"][0], heldout["nasdaq"][0]])
    before, _ = scrape(server)
    ups = 0
    for start in range(0, len(windows), 8):
        ups += int(client.infer_grpc("aggressive", {"ohlcv": windows[start:start + 8]})["direction"].sum())
    requests = -(-len(windows) // 8)
    after, text = scrape(server)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("market_ab_lstm_predictions_total", model="aggressive", direction="up") == ups
    assert delta("market_ab_lstm_predictions_total", model="aggressive", direction="down") == len(windows) - ups
    assert delta("market_ab_lstm_probability_count", model="aggressive") == len(windows)
    assert delta("market_ab_lstm_windows_per_request_count", model="aggressive") == requests
    assert delta("market_ab_lstm_windows_per_request_sum", model="aggressive") == len(windows)
    assert delta("market_ab_lstm_compute_seconds_count", model="aggressive") == requests
    assert delta("market_ab_lstm_compute_seconds_sum", model="aggressive") > 0
    assert "# TYPE market_ab_lstm_compute_seconds histogram" in text


def test_rejections_counted_by_fixed_reason(server_and_client):
    server, client = server_and_client
    before, _ = scrape(server)
    short = np.ones((1, 20, 5), np.float32)
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            client.infer_grpc("robust", {"ohlcv": short})
    with pytest.raises(grpc.RpcError):
        client.infer_grpc("robust", {"attacker_chosen_name": short})
    after, text = scrape(server)
    assert value(after, "market_ab_lstm_rejected_requests_total", model="robust", reason="window_too_short") - \
        value(before, "market_ab_lstm_rejected_requests_total", model="robust", reason="window_too_short") == 3
    assert value(after, "market_ab_lstm_rejected_requests_total", model="robust", reason="input_name") - \
        value(before, "market_ab_lstm_rejected_requests_total", model="robust", reason="input_name") == 1
    assert "attacker_chosen_name" not in text
    reasons = {dict(labels)["reason"] for (name, labels) in after if name == "market_ab_lstm_rejected_requests_total"}
    assert reasons <= set(REJECTION_REASONS)
