"""Serving benchmark: our runtimes against an echo runtime measured in the same run, on this machine.

One MLServer with the shipped ``models/settings.json`` (``parallel_workers`` 0, no debug logging)
holds an echo runtime (``seldon_market_ab.loadtest.echo``) beside the real ``baseline`` LSTM and both routers; a second
one runs the same models with parallel workers.
Every round runs every load once (closed-loop gRPC clients, in a seeded shuffled order), so each
ratio compares two runs made moments apart; the table gives the median and the range over rounds.
In-process figures (features, the model, a router decision) are timed in this process.

    python -m seldon_market_ab.loadtest.benchmark                  # about four minutes here: docs/benchmarks.{json,md}
    python -m seldon_market_ab.loadtest.benchmark --rounds 1 --seconds 0.5 --out /tmp/bench   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import tritonclient.http as triton
from mlserver.settings import ModelParameters, ModelSettings
from prometheus_client.parser import text_string_to_metric_families
from tqdm.auto import tqdm

from seldon_market_ab.binary_data import HEADER
from seldon_market_ab.client import InferenceClient, build_grpc_request, build_request
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.features import compute_features
from seldon_market_ab.local_seldon.manifests import load_documents
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess, free_port
from seldon_market_ab.local_seldon.prometheus import PrometheusAPI, PrometheusProcess, rule_groups
from seldon_market_ab.routers.settings import StoreSettings
from seldon_market_ab.routers.stores import open_store
from seldon_market_ab.routers.stores.writer import DEFAULT_LINGER_SECONDS
from seldon_market_ab.routers.thompson import ThompsonRouter
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.dataset import ohlcv_windows

from .grpc_load import LoadResult, closed_loop
from .rest_load import rest_closed_loop

CLIENTS = 8
MANY_CLIENTS = 32
BATCH = 32
ROUTER = "thompson-router"
OUTCOMES = "outcomes"
SCRAPE_INTERVAL = "2s"
SETTLED_SCRAPES = 3
RULES = Path(__file__).resolve().parents[1] / "manifests" / "base" / "monitoring" / "prometheusrule.yaml"

# (name, what is measured, ratio = numerator ÷ denominator, goal) — the rows of the README table.
ROWS = [
    ("lstm_raw_vs_echo", "LSTM, raw windows, batch-1 requests, 8 clients ÷ echo (same payload)",
     "lstm_raw", "echo_window", 0.6),
    ("lstm_raw_vs_features", "LSTM raw windows ÷ LSTM `features` input", "lstm_raw", "lstm_features", 0.9),
    ("lstm_batch_served_vs_in_process", "32-window requests: served samples/s ÷ in-process samples/s "
     "(features + model)", "lstm_batch_samples", "in_process_batch_samples", 0.7),
    ("thompson_vs_echo", "thompson-router decisions ÷ echo (same payload)", "thompson_decisions", "echo_window", 0.7),
    ("feedback_vs_echo", "feedback ÷ echo (tiny payload), acknowledged feedback durable before the reply",
     "feedback", "echo_tiny", 0.5),
    ("outcomes_vs_echo", "outcomes ÷ echo (the same tiny payload), acknowledged outcomes durable before the reply",
     "outcomes", "echo_outcomes", 0.5),
    ("scraped_vs_not", "LSTM raw windows with Prometheus scraping the server every 2 s (the manifests' rules "
     "evaluated) ÷ the same Prometheus paused, in alternating slices", "lstm_raw_scraped", "lstm_raw_unscraped",
     0.97),
    ("regime_vs_echo", "regime-router decisions ÷ echo (same payload)", "regime_decisions", "echo_window", None),
    ("typed_vs_raw", "LSTM, typed `fp32_contents` ÷ `raw_input_contents`", "lstm_typed", "lstm_raw", None),
    ("lstm_raw_vs_echo_32_clients", "LSTM raw windows ÷ echo, 32 clients", "lstm_raw_32", "echo_window_32", None),
    ("workers_vs_in_process", "LSTM raw windows, 2 parallel workers ÷ in-process (workers 0)", "lstm_raw_workers",
     "lstm_raw", None),
    ("adaptive_vs_no_wait_1_client", "LSTM raw windows, 1 client: shipped batching (`adaptive`) ÷ passes that do "
     "not wait (`batch_wait_seconds: 0`)", "lstm_raw_1", "lstm_no_wait_1", None),
    ("adaptive_vs_no_wait", "the same, 8 clients", "lstm_raw", "lstm_no_wait", None),
    ("adaptive_vs_no_wait_32_clients", "the same, 32 clients", "lstm_raw_32", "lstm_no_wait_32", None),
    ("thread_vs_loop", "32-window requests: shipped (passes of 16 windows or more in a worker thread) ÷ every pass "
     "on the event loop", "lstm_batch", "lstm_batch_on_loop", None),
    ("rest_binary_vs_json", "32-window requests over REST: binary data extension (tensors and outputs as bytes, "
     "bodies built by tritonclient) ÷ JSON", "lstm_batch_rest_binary", "lstm_batch_rest_json", 1.0),
    ("rest_binary_vs_grpc", "32-window requests: REST with the binary data extension ÷ gRPC raw contents",
     "lstm_batch_rest_binary", "lstm_batch", None),
]
NO_WAIT = "baseline-no-wait"  # the baseline model with batch_wait_seconds 0: a pass runs at the end of the turn
ON_LOOP = "baseline-on-loop"  # the baseline model with every forward pass on the event loop
VARIANTS = {NO_WAIT: {"batch_wait_seconds": 0, "batch_wait_policy": "fixed"}, ON_LOOP: {"thread_windows": 100_000}}
# Absolute figures timed in this process, with their goals (microseconds).
IN_PROCESS_GOALS = {"features_served_one_window_us": 50.0, "decision_p99_us": 200.0,
                    "decision_after_feedback_p99_us": 200.0}


def prepare_repository(models_dir: Path, destination: Path, parallel_workers: int) -> Path:
    """The models measured, the echo runtime, and the shipped ``settings.json`` with ``parallel_workers``."""
    for name in ("baseline", ROUTER, "regime-router", OUTCOMES):
        shutil.copytree(models_dir / name, destination / name)
    for name, extra in VARIANTS.items():
        shutil.copytree(models_dir / "baseline", destination / name)
        settings_file = destination / name / "model-settings.json"
        model_settings = json.loads(settings_file.read_text())
        model_settings["name"] = name
        model_settings["parameters"]["extra"].update(extra)
        settings_file.write_text(json.dumps(model_settings))
    shipped = models_dir / "settings.json"
    settings = json.loads(shipped.read_text()) if shipped.exists() else {}
    (destination / "settings.json").write_text(json.dumps({**settings, "parallel_workers": parallel_workers}))
    (destination / "echo").mkdir()
    (destination / "echo" / "model-settings.json").write_text(
        json.dumps({"name": "echo", "implementation": "seldon_market_ab.loadtest.echo.EchoRuntime"}))
    return destination


class Workload:
    """The requests of every load, built once."""

    def __init__(self, artifact: LSTMArtifact):
        ends = np.arange(4000, 4000 + BATCH)
        self.windows = ohlcv_windows("sp500", ends, artifact.min_window)
        self.window = self.windows[:1]
        self.features = artifact.features_from_ohlcv(self.window).astype(np.float32)
        self.decision_ids: list[str] = []

    def rest_bodies(self, binary: bool) -> list[tuple[bytes, dict]]:
        """32 windows to ``baseline`` over REST, as tritonclient builds them: JSON, or every tensor as bytes."""
        tensor = triton.InferInput("ohlcv", list(self.windows.shape), "FP32")
        tensor.set_data_from_numpy(self.windows, binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probability", "direction", "model")]
        body, length = triton.InferenceServerClient.generate_request_body([tensor], outputs=outputs)
        return [(body, {HEADER: str(length)} if length else {"Content-Type": "application/json"})]

    def window_requests(self, model: str, raw: bool = True):
        return [build_grpc_request(model, {"ohlcv": self.window}, raw=raw)]

    def decisions(self, model: str, prefix: str, count: int):
        return [build_grpc_request(model, {"ohlcv": self.window}, request_id=f"{prefix}-{i}") for i in range(count)]

    @staticmethod
    def outcomes(prefix: str, count: int, model: str = OUTCOMES):
        """One outcome per request, each for another answered request (every one is recorded, none a duplicate)."""
        return [build_grpc_request(model, {"request_id": np.array([f"{prefix}-{i}"], dtype=object),
                                              "model": np.array(["baseline"], dtype=object),
                                              "correct": np.array([1], dtype=np.int32), "return": np.array([0.001])})
                for i in range(count)]

    @staticmethod
    def feedback(ids: list[str], model: str = ROUTER):
        return [build_grpc_request(model, {"decision_id": np.array([i], dtype=object), "reward": np.array([1.0])})
                for i in ids]


@contextmanager
def scraped(server, rules: dict):
    """A real Prometheus scraping ``server`` every ``SCRAPE_INTERVAL`` and evaluating ``rules`` meanwhile, in its
    steady state: the load starts once it has scraped ``SETTLED_SCRAPES`` times (its start-up work is over)."""
    folder = Path(tempfile.mkdtemp(prefix="market-ab-benchmark-prometheus-"))
    address = server.metrics_url.split("//", 1)[1].rsplit("/", 1)[0]
    prometheus = PrometheusProcess(folder, {"mlserver": address}, rules, free_port(), interval=SCRAPE_INTERVAL)
    try:
        prometheus.start()
        api, deadline = PrometheusAPI(prometheus.url), time.monotonic() + 60
        while True:  # polls its own count of scrapes
            scrapes = api.query('count_over_time(up{job="mlserver"}[5m])')
            if scrapes and scrapes[0]["value"] >= SETTLED_SCRAPES:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not scrape {address} {SETTLED_SCRAPES} times in 60 s")
            time.sleep(0.2)
        yield prometheus
    finally:
        prometheus.stop()
        shutil.rmtree(folder, ignore_errors=True)


def scraped_and_not(server, requests, clients: int, seconds: float, rules: dict, slices: int = 4) -> dict:
    """The load with a Prometheus scraping ``server`` and with the same Prometheus paused (SIGSTOP: no scrape, no
    rule, no CPU), in ``slices`` alternating pairs of slices, so that the machine's drift over a round (a shared
    two-core box) falls on both alike. ``{name: (LoadResult, server CPU seconds per request)}``."""
    parts: dict[str, list] = {"lstm_raw_scraped": [], "lstm_raw_unscraped": []}
    cpu: dict[str, float] = dict.fromkeys(parts, 0.0)
    with scraped(server, rules) as prometheus:  # measured in its steady state
        try:
            for index in range(2 * slices):
                paused = (index % 4) in (0, 3)  # paused, scraped, scraped, paused, ...: neither goes first always
                os.kill(prometheus.pid, signal.SIGSTOP if paused else signal.SIGCONT)
                key = "lstm_raw_unscraped" if paused else "lstm_raw_scraped"
                started = server.cpu_seconds()
                parts[key].append(closed_loop(server.grpc_address, requests, clients, seconds / slices, reuse=True))
                cpu[key] += server.cpu_seconds() - started
        finally:
            os.kill(prometheus.pid, signal.SIGCONT)  # it must be able to stop
    out = {}
    for key, results in parts.items():
        merged = LoadResult(sum(r.requests for r in results), sum(r.errors for r in results),
                            sum(r.seconds for r in results), np.concatenate([r.latencies for r in results]))
        out[key] = (merged, cpu[key] / max(merged.requests, 1))
    return out


def run_round(index: int, server, workers_server, workload: Workload, seconds: float, rng: random.Random,
              in_process_batch: float, rules: dict) -> dict:
    """Every load once, in a shuffled order (feedback after the decisions it answers)."""
    capacity = int(seconds * 6000) + 100  # more unique requests than any run can send
    loads = {
        "echo_window": (server, workload.window_requests("echo"), CLIENTS, True),
        "lstm_raw": (server, workload.window_requests("baseline"), CLIENTS, True),
        "lstm_features": (server, [build_grpc_request("baseline", {"features": workload.features})], CLIENTS, True),
        "lstm_typed": (server, workload.window_requests("baseline", raw=False), CLIENTS, True),
        "lstm_batch": (server, [build_grpc_request("baseline", {"ohlcv": workload.windows})], CLIENTS, True),
        "echo_window_32": (server, workload.window_requests("echo"), MANY_CLIENTS, True),
        "lstm_raw_32": (server, workload.window_requests("baseline"), MANY_CLIENTS, True),
        "regime_decisions": (server, workload.decisions("regime-router", f"regime-{index}", capacity), CLIENTS, False),
        "echo_tiny": (server, Workload.feedback(["echo-id"], "echo"), CLIENTS, True),
        "outcomes": (server, Workload.outcomes(f"outcome-{index}", capacity), CLIENTS, False),
        "echo_outcomes": (server, Workload.outcomes("echo-outcome", 1, "echo"), CLIENTS, True),
        "lstm_raw_scraped": (server, workload.window_requests("baseline"), CLIENTS, True),
        "lstm_raw_workers": (workers_server, workload.window_requests("baseline"), CLIENTS, True),
        "lstm_no_wait": (server, workload.window_requests(NO_WAIT), CLIENTS, True),
        "lstm_no_wait_32": (server, workload.window_requests(NO_WAIT), MANY_CLIENTS, True),
        "lstm_raw_1": (server, workload.window_requests("baseline"), 1, True),
        "lstm_no_wait_1": (server, workload.window_requests(NO_WAIT), 1, True),
        "lstm_batch_on_loop": (server, [build_grpc_request(ON_LOOP, {"ohlcv": workload.windows})], CLIENTS, True),
        "lstm_batch_rest_json": (server, workload.rest_bodies(binary=False), CLIENTS, True),
        "lstm_batch_rest_binary": (server, workload.rest_bodies(binary=True), CLIENTS, True),
    }
    models = {"lstm_no_wait": NO_WAIT, "lstm_no_wait_32": NO_WAIT, "lstm_no_wait_1": NO_WAIT,
              "lstm_batch_on_loop": ON_LOOP}
    order = list(loads)
    rng.shuffle(order)
    order.insert(rng.randrange(len(order) + 1), "thompson")  # decisions, then feedback for them
    results, server_cpu, per_batch = {}, {}, {}
    for name in order:
        if name == "thompson":
            decisions = workload.decisions(ROUTER, f"decision-{index}", capacity)
            cpu, writes = server.cpu_seconds(), commit_writes(server)
            made = closed_loop(server.grpc_address, decisions, CLIENTS, seconds, reuse=False)
            results["thompson_decisions"] = made
            server_cpu["thompson_decisions"], cpu = (server.cpu_seconds() - cpu) / max(made.requests, 1), \
                server.cpu_seconds()
            per_batch["thompson_decisions"], writes = _per_commit(writes, commit_writes(server), "all"), \
                commit_writes(server)
            ids = [f"decision-{index}-{i}" for i in range(made.requests)]
            results["feedback"] = closed_loop(server.grpc_address, Workload.feedback(ids), CLIENTS, seconds,
                                              reuse=False)
            server_cpu["feedback"] = (server.cpu_seconds() - cpu) / max(results["feedback"].requests, 1)
            per_batch["feedback"] = _per_commit(writes, commit_writes(server), "awaited")
            continue
        target, requests, clients, reuse = loads[name]
        model = models.get(name, "baseline")
        if name == "lstm_raw_scraped":
            for key, (result, cpu_per_request) in scraped_and_not(target, requests, clients, seconds, rules).items():
                results[key], server_cpu[key] = result, cpu_per_request
            continue
        before, cpu = lstm_histograms(target, model), target.cpu_seconds()
        if name.startswith("lstm_batch_rest"):
            results[name] = rest_closed_loop(f"{target.http_url}/v2/models/{model}/infer", requests, clients,
                                             seconds)
        else:
            results[name] = closed_loop(target.grpc_address, requests, clients, seconds, reuse=reuse)
        server_cpu[name] = (target.cpu_seconds() - cpu) / max(results[name].requests, 1)
        after = lstm_histograms(target, model)
        passes = after["forward_windows_count"] - before["forward_windows_count"]
        if name.startswith("lstm"):  # how many windows a forward pass took, from the runtime's histogram
            per_batch[name] = (after["forward_windows_sum"] - before["forward_windows_sum"]) / passes \
                if passes else float("nan")
        if name == "lstm_raw":  # what the runtime's own work costs inside the server, from its histogram
            count = after["compute_seconds_count"] - before["compute_seconds_count"]
            compute_us = 1e6 * (after["compute_seconds_sum"] - before["compute_seconds_sum"]) / count \
                if count else float("nan")
    out = {name: {"throughput": r.throughput, "p50_ms": 1e3 * r.percentile(50), "p99_ms": 1e3 * r.percentile(99),
                  "requests": r.requests, "errors": r.errors, "server_cpu_us": 1e6 * server_cpu[name]}
           for name, r in results.items()}
    for name, windows in per_batch.items():
        out[name]["per_batch"] = windows
    out["lstm_batch_samples"] = {"throughput": BATCH * out["lstm_batch"]["throughput"]}
    out["lstm_raw"]["compute_us"] = compute_us
    out["in_process_batch_samples"] = {"throughput": in_process_batch}
    return out


def commit_writes(server) -> dict[str, float]:
    """Sums and counts of the thompson-router's ``market_ab_router_commit_writes`` (writes per group commit), by
    kind of write (``all``, ``awaited``)."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {f"{sample.labels['writes']}_{sample.name.rsplit('_', 1)[1]}": sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name in ("market_ab_router_commit_writes_sum", "market_ab_router_commit_writes_count")
            and sample.labels.get("router") == ROUTER}


def _per_commit(before: dict, after: dict, kind: str) -> float:
    commits = after.get(f"{kind}_count", 0) - before.get(f"{kind}_count", 0)
    return (after.get(f"{kind}_sum", 0) - before.get(f"{kind}_sum", 0)) / commits if commits else float("nan")


def lstm_histograms(server, model: str) -> dict[str, float]:
    """Sums and counts of ``model``'s ``market_ab_lstm_compute_seconds`` (decoding, features, forward pass per
    request) and ``market_ab_lstm_forward_windows`` (windows per forward pass)."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    values = {sample.name: sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.labels.get("model") == model}
    return {f"{histogram}_{part}": values.get(f"market_ab_lstm_{histogram}_{part}", 0.0)
            for histogram in ("compute_seconds", "forward_windows") for part in ("sum", "count")}


# in process -------------------------------------------------------------------------------------------------

def timed(function, repeats: int) -> np.ndarray:
    """Seconds per call, ``repeats`` calls after one warm-up call."""
    function()
    out = np.empty(repeats)
    for i in range(repeats):
        started = time.perf_counter()
        function()
        out[i] = time.perf_counter() - started
    return out


def in_process_batch_samples(artifact: LSTMArtifact, workload: Workload, repeats: int = 100) -> float:
    """Windows per second through features and model, 32 windows per call (one thread, as served)."""
    torch.set_num_threads(1)
    seconds = timed(lambda: artifact.predict_features(artifact.features_from_ohlcv(workload.windows)), repeats)
    return BATCH / float(np.median(seconds))


def in_process_model(artifact: LSTMArtifact, workload: Workload) -> dict:
    torch.set_num_threads(1)  # as served (torch_threads: 1)
    one = timed(lambda: compute_features(workload.window), 2000)
    served_one = timed(lambda: artifact.features_from_ohlcv(workload.window), 2000)  # only the rows read
    forward_one = timed(lambda: artifact.predict_features(workload.features), 1000)
    batch = timed(lambda: artifact.predict_features(artifact.features_from_ohlcv(workload.windows)), 200)
    batch_features = timed(lambda: artifact.features_from_ohlcv(workload.windows), 200)
    return {
        "features_one_window_us": 1e6 * float(np.median(one)),
        "features_served_one_window_us": 1e6 * float(np.median(served_one)),
        "scaler_and_forward_one_window_us": 1e6 * float(np.median(forward_one)),
        "features_32_windows_ms": 1e3 * float(np.median(batch_features)),
        "features_and_model_32_windows_ms": 1e3 * float(np.median(batch)),
        "batch_samples_per_second": BATCH / float(np.median(batch)),
    }


def in_process_router(models_dir: Path, workload: Workload, state_dir: Path, decisions: int = 2000) -> dict:
    """Decision latency of a ThompsonRouter in this process, steady and right after each feedback."""
    extra = json.loads((models_dir / ROUTER / "model-settings.json").read_text())["parameters"]["extra"]
    settings = ModelSettings(name=ROUTER, implementation=ThompsonRouter,
                             parameters=ModelParameters(uri=str(models_dir / ROUTER),
                                                        extra={**extra, "state_dir": str(state_dir)}))
    router = ThompsonRouter(settings)

    async def measure():
        await router.load()
        decide = [build_request({"ohlcv": workload.window}, f"in-process-{i}") for i in range(2 * decisions)]
        rewards = np.random.default_rng(0).random(2 * decisions) < 0.55

        async def timed_decision(i):
            started = time.perf_counter()
            await router.predict(decide[i])
            return time.perf_counter() - started

        async def send_feedback(i):
            ids = np.array([f"in-process-{i}"], dtype=object)
            await router.predict(build_request({"decision_id": ids, "reward": np.array([float(rewards[i])])}))

        for i in range(200):  # past the warm-up: the posterior is no longer uniform
            await timed_decision(i)
            await send_feedback(i)
        steady = [await timed_decision(i) for i in range(200, 200 + decisions)]
        after = []
        for i in range(200 + decisions, 2 * decisions):
            await send_feedback(i - decisions)
            after.append(await timed_decision(i))
        await router.unload()
        return np.asarray(steady), np.asarray(after)

    steady, after = asyncio.run(measure())
    return {"decision_p50_us": 1e6 * float(np.percentile(steady, 50)),
            "decision_p99_us": 1e6 * float(np.percentile(steady, 99)),
            "decision_after_feedback_p50_us": 1e6 * float(np.percentile(after, 50)),
            "decision_after_feedback_p99_us": 1e6 * float(np.percentile(after, 99))}


# crash drill ------------------------------------------------------------------------------------------------

def crash_drill(models_dir: Path, workdir: Path, workload: Workload, seconds: float = 2.0) -> dict:
    """Decisions are acknowledged before they are committed (feedback is not): SIGKILL the server under a
    decision load and count the acknowledged decisions the store does not have, and what their feedback says."""
    repository = prepare_repository(models_dir, workdir / "drill-models", 0)
    state_dir = workdir / "drill-state"
    requests = workload.decisions(ROUTER, "drill", int(seconds * 6000) + 100)
    answered: list[int] = []
    server = MLServerProcess(repository, parallel_workers=None, state_dir=state_dir).start()
    load = threading.Thread(target=closed_loop, args=(server.grpc_address, requests, CLIENTS, 2 * seconds),
                            kwargs={"reuse": False, "answered": answered})
    load.start()
    time.sleep(seconds)
    server.stop(signal.SIGKILL)
    load.join()
    acknowledged = [f"drill-{i}" for i in answered]
    extra = json.loads((repository / ROUTER / "model-settings.json").read_text())["parameters"]["extra"]
    where = StoreSettings.from_extra({key: extra[key] for key in StoreSettings.model_fields if key in extra}, ROUTER)
    # where the killed router kept its state (its state_dir defaults to the server's $MARKET_AB_STATE_DIR)
    store = open_store(where.store_url(ROUTER), ROUTER, where.state_dir or state_dir)
    lost = [decision_id for decision_id in acknowledged if store.decision(decision_id) is None]
    store.close()
    kept = [decision_id for decision_id in acknowledged if decision_id not in set(lost)]
    with MLServerProcess(repository, parallel_workers=None, state_dir=state_dir) as restarted:
        client = InferenceClient(restarted.grpc_address)

        def feedback(ids):
            return sorted(set(client.infer_grpc(ROUTER, {"decision_id": np.array(ids, dtype=object),
                                                        "reward": np.ones(len(ids))})["status"])) if ids else []

        for_lost, for_kept = feedback(lost[:20]), feedback(kept[:20])
        client.close()
    return {"acknowledged": len(acknowledged), "lost": len(lost), "seconds": seconds,
            "decisions_per_second": len(acknowledged) / seconds, "linger_seconds": DEFAULT_LINGER_SECONDS,
            "feedback_for_lost": for_lost, "feedback_for_kept": for_kept}


# summary ----------------------------------------------------------------------------------------------------

def _median_of(rounds: list[dict], load: str, key: str) -> float | None:
    values = [r[load][key] for r in rounds if key in r[load]]
    return statistics.median(values) if values else None


def summarise(rounds: list[dict]) -> list[dict]:
    rows = []
    for name, measure, numerator, denominator, goal in ROWS:
        ratios = [r[numerator]["throughput"] / r[denominator]["throughput"] for r in rounds
                  if r[denominator]["throughput"] > 0]
        rows.append({
            "name": name, "measure": measure, "goal": goal,
            "ratio": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)},
            "numerator_per_second": statistics.median(r[numerator]["throughput"] for r in rounds),
            "denominator_per_second": statistics.median(r[denominator]["throughput"] for r in rounds),
            "numerator_p50_ms": _median_of(rounds, numerator, "p50_ms"),
            "denominator_p50_ms": _median_of(rounds, denominator, "p50_ms"),
            "numerator_cpu_us": _median_of(rounds, numerator, "server_cpu_us"),
            "denominator_cpu_us": _median_of(rounds, denominator, "server_cpu_us"),
            "numerator_per_batch": _median_of(rounds, numerator, "per_batch"),
            "denominator_per_batch": _median_of(rounds, denominator, "per_batch"),
            "met": None if goal is None else statistics.median(ratios) >= goal,
        })
    return rows


def _pair(row: dict, key: str, form: str) -> str:
    numerator, denominator = row[f"numerator_{key}"], row[f"denominator_{key}"]
    return "" if numerator is None or denominator is None else f"{form.format(numerator)} / {form.format(denominator)}"


def _per_batch(row: dict) -> str:
    """Windows per forward pass of the LSTM loads a row compares, or writes per group commit of the router's (all
    writes for decisions, awaited ones for feedback); the echo has neither."""
    values = [row.get(f"{side}_per_batch") for side in ("numerator", "denominator")]
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values) if any(v is not None for v in values) else ""


def where_the_time_goes(results: dict) -> list[str]:
    """The reading of the table, computed from it: each goal missed, by how much, and the figures that explain it."""
    runs, p = results["runs"], results["in_process"]

    def cpu(load):
        return statistics.median(r[load]["server_cpu_us"] for r in runs)

    def per_batch(load):
        return statistics.median(r[load]["per_batch"] for r in runs)

    in_process = p["features_served_one_window_us"] + p["scaler_and_forward_one_window_us"]
    batch_request_us = 1e6 * BATCH / statistics.median(r["in_process_batch_samples"]["throughput"] for r in runs)
    why = {
        "lstm_raw_vs_echo": f"Server CPU per request: {cpu('lstm_raw'):,.0f} µs against the echo's "
        f"{cpu('echo_window'):,.0f} µs, with {per_batch('lstm_raw'):.2f} windows per forward pass; the difference is "
        f"the runtime's own work ({in_process:,.0f} µs for the features and forward pass of one window in process), "
        "which the profile below splits by part.",
        "lstm_raw_vs_features": f"{cpu('lstm_raw'):,.0f} µs of server CPU per request against "
        f"{cpu('lstm_features'):,.0f} µs for the `features` input, with {per_batch('lstm_raw'):.2f} against "
        f"{per_batch('lstm_features'):.2f} windows per pass: raw windows add the features "
        f"({p['features_served_one_window_us']:,.0f} µs per window in "
        "process) and the price checks.",
        "lstm_batch_served_vs_in_process": f"{cpu('lstm_batch'):,.0f} µs of server CPU per request served, against "
        f"{batch_request_us:,.0f} µs for the same features and forward pass in process. MLServer turns the raw "
        "contents into a Python list (which our decoder packs back into an array), and runs its request path "
        "around the runtime; features and forward pass share the two cores with the load's clients.",
        "thompson_vs_echo": f"{cpu('thompson_decisions'):,.0f} µs against the echo's {cpu('echo_window'):,.0f} µs; "
        f"the decision itself takes {p['decision_p50_us']:,.0f} µs (p50) in process, and its record is committed by "
        f"the writer thread in the same process ({per_batch('thompson_decisions'):.1f} decisions per commit), which "
        "holds the GIL while it writes.",
        "feedback_vs_echo": f"{cpu('feedback'):,.0f} µs against the echo's {cpu('echo_tiny'):,.0f} µs for the same "
        "tiny payload; each feedback request waits for its group commit (SQLite, `synchronous=FULL`), in which the "
        f"writer also derives the new propensities, and a commit held {per_batch('feedback'):.1f} feedback rows on "
        "average.",
        "outcomes_vs_echo": f"{cpu('outcomes'):,.0f} µs against the echo's {cpu('echo_outcomes'):,.0f} µs for the "
        "same payload; each outcome waits for its group commit (SQLite, `synchronous=FULL`) before the reply.",
        "scraped_vs_not": f"{cpu('lstm_raw_scraped'):,.0f} µs of server CPU per request while scraped, against "
        f"{cpu('lstm_raw_unscraped'):,.0f} µs while Prometheus is paused; it shares the two cores.",
    }
    lines = ["Goals missed, by how much, and where the time goes (server CPU per request, medians over rounds; "
             "the profile below splits it by part):", ""]
    for row in results["rows"]:
        if row["met"] is False:
            ratio = row["ratio"]["median"]
            lines.append(f"- **{row['measure']}**: {ratio:.2f} against ≥ {row['goal']:g}, "
                         f"{100 * (1 - ratio / row['goal']):.0f}% short. {why.get(row['name'], '')}".rstrip())
    if len(lines) == 2:
        lines = ["Every goal is met."]
    straddling = [row["measure"] for row in results["rows"]
                  if row["goal"] is not None and row["ratio"]["min"] < row["goal"] <= row["ratio"]["max"]]
    if straddling:
        lines += ["", "Rows whose rounds fall on both sides of their goal (this machine is shared; the median says "
                  "little about these): " + "; ".join(straddling) + "."]
    return lines


def _table(rows: list[dict]) -> list[str]:
    lines = ["| measure | ratio | goal | met | this machine: numerator / denominator per second | p50 ms | "
             "server CPU µs per request | windows per forward pass (LSTM) or writes per commit (router) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row["ratio"]
        goal = "" if row["goal"] is None else f"≥ {row['goal']:g}"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        latency, cpu = (_pair(row, "p50_ms", "{:.1f}"), _pair(row, "cpu_us", "{:,.0f}"))
        lines.append(f"| {row['measure']} | {r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}] | {goal} | {met} | "
                     f"{row['numerator_per_second']:,.0f} / {row['denominator_per_second']:,.0f} | {latency} | {cpu} | "
                     f"{_per_batch(row)} |")
    return lines


def render_rows(results: dict, names: tuple[str, ...]) -> str:
    """Some rows of the table, for a page about them (the same figures as the whole table)."""
    rows = [row for row in results["rows"] if row["name"] in names]
    return "\n".join([f"From `python -m seldon_market_ab.loadtest.benchmark` ({results['rounds']} alternated rounds of "
                      f"{results['seconds']:g} s per load, {CLIENTS} closed-loop clients, one MLServer; "
                      f"{results['machine']['cpus']} CPUs); ratios are medians [min, max] over rounds.", "",
                      *_table(rows)])


def render_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Generated by `python -m seldon_market_ab.loadtest.benchmark` ({results['rounds']} alternated rounds of "
        f"{results['seconds']:g} s per load, {CLIENTS} closed-loop gRPC clients unless noted, one MLServer with the "
        f"shipped `models/settings.json`; {m['cpus']} CPUs, Python {m['python']}, MLServer {m['mlserver']}, torch "
        f"{m['torch']}). Ratios are medians [min, max] over rounds; requests/s are this machine's medians.",
        "",
        *_table(results["rows"]),
    ]
    p, rows = results["in_process"], results["window_rows"]
    lines += [
        "",
        "| in process, this machine | median | goal | met |",
        "|---|---|---|---|",
    ]
    labels = {
        "features_served_one_window_us": f"features for one {rows}-row window, the rows the model reads (µs)",
        "features_one_window_us": f"features for every row of one {rows}-row window (µs)",
        "scaler_and_forward_one_window_us": "scaler and TorchScript forward, one window (µs)",
        "features_32_windows_ms": "features for 32 windows (ms)",
        "features_and_model_32_windows_ms": "features and model for 32 windows (ms)",
        "decision_p50_us": "router decision with its state handling, p50 (µs; each router row: the median of 3 runs "
                           "of 2,000 decisions)",
        "decision_p99_us": "router decision with its state handling, p99 (µs)",
        "decision_after_feedback_p50_us": "router decision right after a feedback, p50 (µs)",
        "decision_after_feedback_p99_us": "router decision right after a feedback, p99 (µs)",
    }
    for key, label in labels.items():
        goal = IN_PROCESS_GOALS.get(key)
        met = "" if goal is None else ("yes" if p[key] <= goal else "**no**")
        lines.append(f"| {label} | {p[key]:,.1f} | {'' if goal is None else f'≤ {goal:g}'} | {met} |")
    compute = statistics.median(r["lstm_raw"]["compute_us"] for r in results["runs"])
    lines.append(f"| a batch-1 request's time inside the runtime under 8 clients: decoding, the wait for company, "
                 f"features and forward pass (µs of wall time, `market_ab_lstm_compute_seconds`) | {compute:,.1f} |  "
                 "|  |")
    lines += ["", *where_the_time_goes(results)]
    s = results["server"]
    lines += ["", f"Start-up to every model ready: {s['ready_seconds']:.1f} s (workers 0), "
                  f"{s['workers_ready_seconds']:.1f} s ({s['workers']} workers). Resident memory after the run: "
                  f"{s['resident_mb']:,.0f} MB (workers 0), {s['workers_resident_mb']:,.0f} MB ({s['workers']} "
                  "workers, all processes)."]
    d = results["crash_drill"]
    lines += ["", f"Crash drill: `kill -9` of the server after {d['seconds']:g} s of decisions ({d['acknowledged']:,} "
                  f"acknowledged, {d['decisions_per_second']:,.0f}/s, {CLIENTS} clients): {d['lost']} acknowledged "
                  f"decisions were not in the store (decisions are committed in groups every "
                  f"{1e3 * d['linger_seconds']:g} ms, after their reply). Feedback for a lost decision answers "
                  f"`{', '.join(d['feedback_for_lost']) or '-'}`, for a kept one "
                  f"`{', '.join(d['feedback_for_kept'])}`. "
                  "Acknowledged feedback is committed before its reply and is never lost "
                  "(tests/integration/test_router_state.py)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per load and round")
    parser.add_argument("--workers", type=int, default=2, help="parallel workers of the second server")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="market-ab-benchmark-"))
    repository = prepare_repository(args.models_dir, workdir / "models", 0)
    workers_repository = prepare_repository(args.models_dir, workdir / "models-workers", args.workers)
    artifact = LSTMArtifact.load(args.models_dir / "baseline")
    workload = Workload(artifact)
    in_process = in_process_model(artifact, workload)
    # p99 of 2,000 decisions moves with whatever else this shared machine runs: the median of three measurements
    routers = [in_process_router(args.models_dir, workload, workdir / f"in-process-state-{i}") for i in range(3)]
    in_process.update({key: statistics.median(r[key] for r in routers) for key in routers[0]})
    rng = random.Random(args.seed)
    rules = rule_groups(load_documents([RULES]))
    with MLServerProcess(repository, parallel_workers=None, state_dir=workdir / "state") as server, \
            MLServerProcess(workers_repository, parallel_workers=None, state_dir=workdir / "workers-state") as workers:
        # Train the router past its warm-up, so decisions use a real posterior.
        warm = workload.decisions(ROUTER, "warm", 200)
        closed_loop(server.grpc_address, warm, CLIENTS, 60, reuse=False)
        closed_loop(server.grpc_address, Workload.feedback([f"warm-{i}" for i in range(200)]), CLIENTS, 60,
                    reuse=False)
        rounds = []
        for index in tqdm(range(args.rounds), desc="benchmark rounds"):
            batch = in_process_batch_samples(artifact, workload)
            rounds.append(run_round(index, server, workers, workload, args.seconds, rng, batch, rules))
        server_figures = {"ready_seconds": server.ready_seconds, "workers_ready_seconds": workers.ready_seconds,
                          "workers": args.workers, "resident_mb": server.resident_memory() / 2**20,
                          "workers_resident_mb": workers.resident_memory() / 2**20}
    drill = crash_drill(args.models_dir, workdir, workload, seconds=max(args.seconds, 0.5))
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "mlserver": version("mlserver"), "torch": version("torch")},
        "rounds": args.rounds, "seconds": args.seconds, "window_rows": artifact.min_window,
        "rows": summarise(rounds), "in_process": in_process,
        "server": server_figures, "crash_drill": drill, "runs": rounds,
    }
    write_evidence(args.out, "benchmarks", results, render_markdown)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
