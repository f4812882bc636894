"""The local stack's real Prometheus (the distribution's binary) scraping `market-ab serve` with the manifests' alert
rules, `for:` capped at 2 s: it scrapes the gateway and MLServer, loads exactly the manifests' rules, every dashboard
query returns a series while traffic flows, the outcome counters equal what was sent, and every alert that traffic
can provoke here fires for the model that provoked it and for no other. Waits are polls of Prometheus's own API with a
deadline (it scrapes on its own clock)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter

import grpc
import numpy as np
import pytest
import yaml

from seldon_market_ab.analysis import live_metrics
from seldon_market_ab.cli.demo import DEMO_EXPERIMENTS, demo_repository
from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.prometheus import PrometheusAPI, duration_seconds, rule_groups, scrape_config
from seldon_market_ab.local_seldon.serve_process import ServeProcess
from seldon_market_ab.training.dataset import heldout_days

from ..conftest import MARKET_AB, MIN_WINDOW, MODELS, REPO

MANIFESTS = REPO / "manifests"
RULES = yaml.safe_load((MANIFESTS / "base/monitoring/prometheusrule.yaml").read_text())
DASHBOARD = json.loads((MANIFESTS / "base/monitoring/market-ab-dashboard.json").read_text())
# Alerts the traffic below provokes, and the labels of the series each must fire for.
PROVOKED = {"MarketAbErrorRate": {"model": "faulty"}, "MarketAbLatencyHigh": {"model": "faulty"},
            "MarketAbInputDrift": {"model": "drift-detector"}, "MarketAbArmDominating": {"router": "regime-router"},
            "MarketAbFeedbackLag": {"router": "regime-router"}, "MarketAbArmStarved": {"router": "regime-router"}}
# The others, and why they stay silent here.
SILENT = {
    "MarketAbServerLatencyP99": "no model here is slow enough for the server's p99 to pass 100 ms (faulty adds 30 ms)",
    "MarketAbPipelineLatencyP99": "the pipelines answer within 250 ms at this load",
}


def test_the_rules_are_taken_from_the_prometheusrule_and_for_is_only_capped():
    documents = [("prometheusrule.yaml", RULES)]
    assert rule_groups(documents) == {"groups": RULES["spec"]["groups"]}
    capped = rule_groups(documents, "2s")["groups"][0]["rules"]
    for original, rule in zip(RULES["spec"]["groups"][0]["rules"], capped, strict=True):
        assert rule["expr"] == original["expr"] and rule["for"] == "2s"
    assert rule_groups(documents, "45m")["groups"][0]["rules"][0]["for"] == "30m"  # shorter ones stay
    assert duration_seconds("1h30m") == 5400 and duration_seconds("250ms") == 0.25
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_seconds("ten minutes")
    config = scrape_config({"gateway": "127.0.0.1:9000"}, "2s")
    assert config["scrape_configs"] == [{"job_name": "gateway", "static_configs": [{"targets": ["127.0.0.1:9000"]}]}]


def test_a_missing_prometheus_is_named_with_how_to_install_it(tmp_path):
    import subprocess

    done = subprocess.run([*MARKET_AB, "--models-dir", str(MODELS), "serve",
                           "--http-port", "1", "--grpc-port", "2"], capture_output=True, text=True, timeout=120,
                          env={"PATH": str(tmp_path), "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert done.returncode == 2
    assert "prometheus is not installed" in done.stderr and "apt-get install prometheus" in done.stderr
    assert "--no-prometheus" in done.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`market-ab serve` with the demo's experiments (a faulty candidate among them) and its Prometheus."""
    folder = tmp_path_factory.mktemp("prometheus")
    repository = demo_repository(MODELS, folder / "models", seed=0)
    extra = folder / "experiments.yaml"
    extra.write_text(yaml.safe_dump_all(DEMO_EXPERIMENTS))
    with ServeProcess(repository, [MANIFESTS / "overlays/dev", extra], seed=0, log_path=folder / "serve.log",
                      prometheus=True, extra_args=["--alert-for", "2s", "--scrape-interval", "1s",
                                                   "--prometheus-dir", str(folder / "prom")]) as serve:
        yield serve, PrometheusAPI(serve.prometheus_url)


def eventually(check, timeout: float = 90.0, what: str = ""):
    """``check()`` once it returns something true, polling Prometheus (which scrapes and evaluates on its own clock);
    fails with the last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not within {timeout} s: {what} (last: {value!r})"
            return value
        time.sleep(0.5)


@pytest.fixture(scope="module")
def traffic(stack):
    """What provokes the alerts, outcomes for every answer, rewards for the Thompson router (not the regime router:
    its feedback lags) and a few bad requests; the outcomes sent, by model."""
    serve, _ = stack
    client = InferenceClient(serve.grpc_address, serve.http_url, retries=0)
    days = heldout_days(("sp500",), 80, MIN_WINDOW)
    sent = Counter()
    for i, day in enumerate(days):
        protocol = "rest" if i % 2 else "grpc"
        try:
            answer = client.infer("fault-test.experiment", {"ohlcv": day.ohlcv[None]}, protocol)
        except Exception:  # noqa: BLE001 - the faulty candidate's injected failures
            continue
        model = answer.route.strip(":").split(":")[-1].rsplit("_", 1)[0]
        correct = (int(answer.outputs["direction"][0]) == 1) == (day.next_return > 0)
        assert client.send_outcomes([answer.request_id], [model], [correct], [0.001]) == ["recorded"]
        sent[model] += 1
        decided = client.infer("mab.pipeline", {"ohlcv": day.ohlcv[None]}, protocol)
        client.infer("thompson-router", {"decision_id": np.array([decided.request_id], dtype=object),
                                         "reward": np.array([float(correct)])})
    for _ in range(110):  # one window: one regime, one arm; no feedback
        client.infer("regime-router", {"ohlcv": days[0].ohlcv[None]})
    for _ in range(3):  # bad input: a window too short to compute features from
        with pytest.raises(grpc.RpcError):
            client.infer("robust", {"ohlcv": days[0].ohlcv[None, -20:]})
    part = days[:60]  # a broken feed: open, high and low equal to the close
    broken = np.stack([d.ohlcv for d in part]).copy()
    broken[..., 0] = broken[..., 1] = broken[..., 2] = broken[..., 3]
    assert client.infer("drift-detector", {"ohlcv": broken})
    client.close()
    return sent


def test_prometheus_scrapes_the_gateway_and_mlserver(stack):
    _, prometheus = stack
    eventually(lambda: {t["labels"]["job"]: t["health"] for t in prometheus.targets()} ==
               {"gateway": "up", "mlserver": "up"}, what="both targets up")


def test_the_loaded_rules_are_the_manifests(stack):
    _, prometheus = stack
    loaded = {rule["name"]: rule for rule in prometheus.alert_rules()}
    manifest = {rule["alert"]: rule for rule in RULES["spec"]["groups"][0]["rules"]}
    assert set(loaded) == set(manifest) == set(PROVOKED) | set(SILENT)
    assert all(loaded[name]["duration"] == 2 for name in loaded)  # --alert-for 2s


def test_every_dashboard_query_returns_a_series_while_traffic_flows(stack, traffic):
    _, prometheus = stack
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            eventually(lambda expr=target["expr"]: prometheus.query(expr), 60,
                       f"panel {panel['title']!r}: {target['expr']}")


def test_the_outcome_counters_equal_what_was_sent(stack, traffic):
    _, prometheus = stack

    def counted():
        return Counter({r["metric"]["model"]: r["value"] for r in
                        prometheus.query("sum by (model) (market_ab_outcomes_total)") if r["value"]})

    assert traffic["faulty"] and traffic["baseline"]
    eventually(lambda: counted() == traffic, 60, f"outcomes {dict(traffic)}")


def test_each_alert_the_traffic_provokes_fires_for_its_source_only(stack, traffic):
    _, prometheus = stack

    def firing():
        return [a["labels"] for a in prometheus.alerts() if a["state"] == "firing"]

    for name, labels in PROVOKED.items():
        eventually(lambda name=name, labels=labels: any(a["alertname"] == name and labels.items() <= a.items()
                                                        for a in firing()), 90, f"{name} firing for {labels}")
    fired = firing()
    assert not [a for a in fired if a["alertname"] in ("MarketAbErrorRate", "MarketAbLatencyHigh")
                and a.get("model") != "faulty"], fired
    assert not [a for a in fired if a["alertname"] in SILENT], fired
    # what the demo's report reads: the ALERTS series over a time range
    seen = live_metrics.firing_alerts(prometheus, time.time() - 600, time.time(), 1.0)
    assert {(a["alertname"], tuple(sorted(labels.items()))) for name, labels in PROVOKED.items() for a in seen
            if a["alertname"] == name and labels.items() <= a["labels"].items()} and \
        {a["alertname"] for a in seen} >= set(PROVOKED), seen


def test_the_gateway_and_models_metrics_are_reachable_as_prometheus_scrapes_them(stack):
    serve, _ = stack
    text = urllib.request.urlopen(f"{serve.http_url}/metrics", timeout=10).read().decode()
    assert "seldon_model_infer_total" in text and "market_ab_gateway_requests_total" in text


def test_a_port_already_taken_is_refused_not_mistaken_for_ours(tmp_path):
    """The distribution's package may run a Prometheus as a service on 9090: its readiness is not ours."""
    import socket

    from seldon_market_ab.local_seldon.prometheus import PrometheusProcess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is in use.*--prometheus-port"):
            PrometheusProcess(tmp_path, {"x": "127.0.0.1:1"}, {"groups": []}, port).start()
