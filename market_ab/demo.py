"""The demo: ``market-ab serve`` on the dev overlay, real held-out windows sent through its pipelines and its
experiment over gRPC, and the realised moves fed back to the routers."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from loadtest.client import InferenceClient
from local_seldon.serve_process import ServeProcess
from runtimes.artifact import LSTMArtifact
from training.dataset import heldout_days
from training.report import load_metadata, text_table
from training.train import train_models
from training.variants import VARIANTS

DEMO_INSTRUMENTS = ("sp500", "nasdaq")


def heldout_windows(instrument: str, count: int, rows: int):
    """The last ``count`` test-period windows of ``instrument``: dates, OHLCV, realised next-day move up."""
    days = heldout_days((instrument,), count, rows)
    return [d.date for d in days], np.stack([d.ohlcv for d in days]), np.array([d.next_return > 0 for d in days])


def run_demo(models_dir: Path, windows: int = 5, manifests: list[Path] | None = None) -> int:
    missing = [n for n in VARIANTS if not (models_dir / n / "model.pt").exists()]
    if missing:
        print(f"training {', '.join(missing)} into {models_dir}/ (a few minutes on 2 cores)")
        train_models(missing, models_dir)
    print("\nTest-period evaluation stored with each model (market-ab evaluate):")
    print(text_table(load_metadata(models_dir), "test"))

    rows = LSTMArtifact.load(models_dir / "baseline").min_window
    manifests = manifests or [Path(__file__).resolve().parents[1] / "manifests" / "overlays" / "dev"]
    started = time.perf_counter()
    # each demo starts with fresh routers: market-ab serve keeps their state in a new temporary folder
    with ServeProcess(models_dir, manifests, seed=0) as serve:
        print(f"\nmarket-ab serve ({', '.join(map(str, manifests))}) ready in {time.perf_counter() - started:.1f}s: "
              f"gateway REST {serve.http_url}, gRPC {serve.grpc_address}; MLServer gRPC {serve.mlserver_grpc_address}")
        direct = InferenceClient(serve.mlserver_grpc_address)
        for instrument in DEMO_INSTRUMENTS:
            dates, ohlcv, went_up = heldout_windows(instrument, windows, rows)
            print(f"\n{instrument}: {windows} held-out windows of {rows} daily rows, one gRPC request per model, "
                  "each model called directly on MLServer")
            print(f"{'model':<13}" + "".join(f"{d:>12}" for d in dates) + "   correct")
            for name in VARIANTS:
                answer = direct.infer_grpc(name, {"ohlcv": ohlcv})
                cells = "".join(f"{p:>10.3f}{'↑' if d else '↓':>2}" for p, d in zip(answer["probability"],
                                                                                   answer["direction"], strict=True))
                correct = int((answer["direction"].astype(bool) == went_up).sum())
                print(f"{name:<13}{cells}   {correct}/{windows}")
            print(f"{'realised':<13}" + "".join(f"{'↑' if up else '↓':>12}" for up in went_up))
        direct.close()
        gateway = InferenceClient(serve.grpc_address)
        route_with_feedback(gateway, windows, rows)
        split_by_experiment(gateway, windows, rows)
        gateway.close()
    return 0


ROUTED = (("mab.pipeline", "thompson-router"), ("contextual.pipeline", "regime-router"))


def route_with_feedback(client: InferenceClient, windows: int, rows: int) -> None:
    """What a trading loop does: ask a pipeline (its router picks the arm that answers), and reward that router by
    the request id once the move is known."""
    print("\nPipelines through the gateway: the router picks an arm, only that arm answers, and the realised move "
          "goes back to the router as feedback by request id (reward 1 if the direction was right)")
    print(f"{'pipeline':<21}{'date':<12}{'instrument':<11}{'arm':<14}{'p(up)':>8}{'moved':>7}{'reward':>8}  feedback")
    for pipeline, router in ROUTED:
        for instrument in DEMO_INSTRUMENTS:
            dates, ohlcv, went_up = heldout_windows(instrument, windows, rows)
            for date, window, up in zip(dates, ohlcv, went_up, strict=True):
                request_id = str(uuid.uuid4())
                answer = client.infer_grpc(pipeline.split(".")[0], {"ohlcv": window[None]}, request_id=request_id,
                                           metadata=(("seldon-model", pipeline),))
                reward = float(bool(answer["direction"][0]) == bool(up))
                status = client.infer_grpc(router, {"decision_id": np.array([request_id], dtype=object),
                                                    "reward": np.array([reward])},
                                           metadata=(("seldon-model", router),))["status"][0]
                print(f"{pipeline:<21}{date:<12}{instrument:<11}{answer['model'][0]:<14}"
                      f"{answer['probability'][0]:>8.3f}{'↑' if up else '↓':>7}{reward:>8.0f}  {status}")


def split_by_experiment(client: InferenceClient, windows: int, rows: int) -> None:
    served = Counter()
    for instrument in DEMO_INSTRUMENTS:
        _, ohlcv, _ = heldout_windows(instrument, windows, rows)
        for window in ohlcv:
            answer = client.infer_grpc("ab-test", {"ohlcv": window[None]},
                                       metadata=(("seldon-model", "ab-test.experiment"),))
            served[answer["model"][0]] += 1
    print(f"\nExperiment ab-test (baseline 70 / enhanced 30, mirrored to lightweight): {sum(served.values())} "
          f"requests served by " + ", ".join(f"{model} {count}" for model, count in sorted(served.items())))
