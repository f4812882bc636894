"""A short headless Locust run, REST and gRPC users together, through `market-ab serve` with the real models: every
request is answered by an arm of the pipeline, the router records a decision for each, each answer's reward reaches
that router by request id and is applied, each answer's outcome is recorded by the outcomes model under the arm that
answered, and the report built from the run counts the same (requests sent = decisions = rewards = outcomes)."""

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest

from seldon_market_ab.analysis.report import ExperimentRun, analyse
from seldon_market_ab.local_seldon.serve_process import ServeProcess

from ..conftest import MODELS, REPO


def decisions(metrics_url: str, router: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    return sum(float(value) for value in re.findall(
        rf'market_ab_router_decisions_total\{{[^}}]*router="{router}"[^}}]*\}} (\S+)', text))


def outcomes_by_model(metrics_url: str) -> Counter:
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    return Counter({model: float(value) for model, value in re.findall(
        r'market_ab_outcomes_total\{[^}]*model="([^"]+)"[^}]*\} (\S+)', text)})


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    folder = tmp_path_factory.mktemp("locust")
    with ServeProcess(MODELS, [REPO / "manifests/overlays/dev"], log_path=folder / "serve.log") as process:
        yield process


@pytest.mark.parametrize("target, router, arms", [
    ("mab.pipeline", "thompson-router", {"baseline", "enhanced", "lightweight"}),
    ("contextual.pipeline", "regime-router", {"robust", "aggressive", "conservative", "baseline"}),
])
def test_locust_traffic_is_answered_decided_and_rewarded(serve, tmp_path, target, router, arms):
    log = tmp_path / "requests.jsonl"
    before = decisions(serve.mlserver_metrics_url, router)
    outcomes_before = outcomes_by_model(serve.mlserver_metrics_url)
    env = {**os.environ, "MARKET_AB_TARGET": target, "MARKET_AB_ROUTER": router, "MARKET_AB_GRPC": serve.grpc_address,
           "MARKET_AB_LOG": str(log), "MARKET_AB_DAYS": "40", "MARKET_AB_FEEDBACK_DELAY": "0.5",
           "MARKET_AB_MODELS": str(MODELS)}
    done = subprocess.run([sys.executable, "-m", "locust", "-f", str(REPO / "loadtest/locustfile.py"), "--headless",
                           "-u", "4", "-r", "4", "-t", "120s", "--stop-timeout", "30", "--host", serve.http_url,
                           "--only-summary"],
                          capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    requests = [e for e in entries if e["kind"] == "request"]
    feedback = {e["request_id"]: e for e in entries if e["kind"] == "feedback"}
    assert {r["protocol"] for r in requests} == {"grpc", "rest"}
    assert not [r for r in requests if "error" in r]
    assert {r["arm"] for r in requests} <= arms
    assert len({r["request_id"] for r in requests}) == len(requests)
    assert decisions(serve.mlserver_metrics_url, router) - before == len(requests)
    assert set(feedback) == {r["request_id"] for r in requests}
    assert {e["status"] for e in feedback.values()} == {"applied"}
    assert all(e["reward"] == float(r["correct"]) for r in requests for e in [feedback[r["request_id"]]])
    outcomes = {e["request_id"]: e for e in entries if e["kind"] == "outcome"}
    assert set(outcomes) == {r["request_id"] for r in requests}
    assert {e["status"] for e in outcomes.values()} == {"recorded"}
    counted = outcomes_by_model(serve.mlserver_metrics_url)
    counted.subtract(outcomes_before)
    assert +counted == Counter(r["arm"] for r in requests)  # the arm each answer came from, as the log has it
    # the report built from this log counts the same: requests sent = router decisions = outcomes joined
    report = analyse(ExperimentRun(target, "ab", target, "baseline", None, log, router))
    assert report["counts"]["sent"] == len(requests) == report["counts"]["feedback_applied"]
    assert sum(arm["n"] for arm in report["arms"].values()) == len(requests)
    by_t = sorted(requests, key=lambda r: r["t"])  # the shared sequence replays days in date order
    dates = [r["date"] for r in by_t]
    assert dates == sorted(dates) or dates.index(min(dates), 1) > 0  # in order, or wrapped round once
