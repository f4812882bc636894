"""The demo: serve the model repository with a real MLServer and send it real held-out windows over gRPC."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from loadtest.client import InferenceClient
from local_seldon.mlserver_process import MLServerProcess
from runtimes.artifact import LSTMArtifact
from training.data import load_instrument
from training.dataset import ohlcv_windows
from training.report import load_metadata, text_table
from training.train import train_models
from training.variants import VARIANTS

DEMO_INSTRUMENTS = ("sp500", "nasdaq")


def heldout_windows(instrument: str, count: int, rows: int):
    """The last ``count`` test-period windows of ``instrument``: dates, OHLCV, realised next-day move up."""
    frame = load_instrument(instrument)
    ends = np.arange(len(frame) - 1 - count, len(frame) - 1)
    close = frame["close"].to_numpy()
    dates = [str(day)[:10] for day in frame.index[ends]]
    return dates, ohlcv_windows(instrument, ends, rows), close[ends + 1] > close[ends]


def run_demo(models_dir: Path, windows: int = 5) -> int:
    missing = [n for n in VARIANTS if not (models_dir / n / "model.pt").exists()]
    if missing:
        print(f"training {', '.join(missing)} into {models_dir}/ (a few minutes on 2 cores)")
        train_models(missing, models_dir)
    print("\nTest-period evaluation stored with each model (market-ab evaluate):")
    print(text_table(load_metadata(models_dir), "test"))

    rows = LSTMArtifact.load(models_dir / "baseline").min_window
    started = time.perf_counter()
    state_dir = Path(tempfile.mkdtemp(prefix="market-ab-demo-state-"))  # each demo starts with fresh routers
    # Server settings (workers, logging) are the repository's own settings.json.
    with MLServerProcess(models_dir, parallel_workers=None, state_dir=state_dir) as server:
        print(f"\nmlserver start {models_dir}/ ready in {time.perf_counter() - started:.1f}s: "
              f"REST {server.http_url}, gRPC {server.grpc_address}, metrics {server.metrics_url}")
        client = InferenceClient(server.grpc_address)
        for instrument in DEMO_INSTRUMENTS:
            dates, ohlcv, went_up = heldout_windows(instrument, windows, rows)
            print(f"\n{instrument}: {windows} held-out windows of {rows} daily rows, one gRPC request per model")
            print(f"{'model':<13}" + "".join(f"{d:>12}" for d in dates) + "   correct")
            for name in VARIANTS:
                answer = client.infer_grpc(name, {"ohlcv": ohlcv})
                cells = "".join(f"{p:>10.3f}{'↑' if d else '↓':>2}" for p, d in zip(answer["probability"],
                                                                                   answer["direction"], strict=True))
                correct = int((answer["direction"].astype(bool) == went_up).sum())
                print(f"{name:<13}{cells}   {correct}/{windows}")
            print(f"{'realised':<13}" + "".join(f"{'↑' if up else '↓':>12}" for up in went_up))
        route_with_feedback(client, windows, rows)
        client.close()
    print(f"Router state (SQLite, one file per router) is in {state_dir}; posteriors are on /metrics "
          "(market_ab_router_posterior_mean).")
    return 0


def route_with_feedback(client: InferenceClient, windows: int, rows: int) -> None:
    """What a pipeline and a trading loop do: route, ask the chosen model, reward it when the move is known."""
    print("\nRouters: each window is routed, the chosen model answers, and the realised move is sent back as "
          "feedback (reward 1 if the direction was right)")
    print(f"{'router':<16}{'date':<12}{'instrument':<11}{'regime':<16}{'arm':<13}{'propensity':>10}"
          f"{'p(up)':>8}{'moved':>7}{'reward':>8}  feedback")
    for router in ("thompson-router", "regime-router"):
        for instrument in DEMO_INSTRUMENTS:
            dates, ohlcv, went_up = heldout_windows(instrument, windows, rows)
            for date, window, up in zip(dates, ohlcv, went_up, strict=True):
                decision = client.infer_grpc(router, {"ohlcv": window[None]}, request_id=str(uuid.uuid4()))
                arm = decision["arm"][0]
                answer = client.infer_grpc(arm, {"ohlcv": decision[arm]})
                reward = float(bool(answer["direction"][0]) == bool(up))
                status = client.infer_grpc(router, {"decision_id": np.array(decision["decision_id"], dtype=object),
                                                    "reward": np.array([reward])})["status"][0]
                print(f"{router:<16}{date:<12}{instrument:<11}{decision.get('regime', ['-'])[0]:<16}{arm:<13}"
                      f"{decision['propensity'][0]:>10.3f}{answer['probability'][0]:>8.3f}{'↑' if up else '↓':>7}"
                      f"{reward:>8.0f}  {status}")
