"""What the drift detector costs the predictions it watches: the LSTM's latency under load, with and without the
detector beside it fed from the same traffic, measured in one run on this machine.

One MLServer (the shipped ``settings.json``: ``parallel_workers`` 0) holds ``baseline`` and ``drift-detector``,
as one Seldon Server does when both are scheduled on it: the detector's tests share the processor with the
model. Every round runs three loads in a shuffled order:

- *alone*: gRPC clients send batch-1 raw windows to ``baseline``, in two ways: 8 closed-loop clients, which
  saturate this machine, and an open loop at half that throughput, which leaves headroom as a production server
  has (latency counted from when each request was due);
- *with the detector*: the same, while a feeder sends the detector one window of feature rows (real, consecutive
  S&P 500 days) for every ``window_size`` predictions answered: what a pipeline step with
  ``batch: {size: 60}`` delivers. With the shipped settings (tests in a child process, ``tests_in:
  process``), with the tests in a thread of the server (``tests_in: thread``), and with the detector on a second
  MLServer of its own on the same machine (as on a Seldon Server of its own, but sharing these two cores).

The table gives the ratios (with ÷ alone) of p50, p99 and throughput: medians and ranges over rounds.

    python -m seldon_market_ab.loadtest.drift_serving                 # about four minutes: docs/drift-serving.{json,md}
    python -m seldon_market_ab.loadtest.drift_serving --rounds 1 --seconds 1 --out /tmp/drift-serving   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import grpc
import numpy as np
from tqdm.auto import tqdm

from seldon_market_ab.client import InferenceClient, build_grpc_request
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.features import compute_features
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.data import load_instrument
from seldon_market_ab.training.dataset import ohlcv_windows

from .grpc_load import closed_loop, open_loop

CLIENTS = 8  # closed-loop clients: they saturate this machine
HEADROOM = 0.5  # the open-loop load's rate, as a share of the closed loop's throughput alone
MODEL, DETECTOR = "baseline", "drift-detector"
IN_THREAD = "drift-detector-thread"  # the shipped detector with tests_in: thread
# load -> (where the detector is served: "same" MLServer as the model or its "own", the detector's name)
LOADS = {"with_detector": ("same", DETECTOR), "with_detector_in_thread": ("same", IN_THREAD),
         "with_detector_own_server": ("own", DETECTOR)}
LOAD_LABELS = ("tests in a child process (shipped)", "tests in a thread of the server",
               "on an MLServer of its own (shipped settings)")
P99_GOAL = 1.05  # the detector may cost the predictions at most 5% at p99


def prepare_repository(models_dir: Path, destination: Path) -> Path:
    for name in (MODEL, DETECTOR):
        shutil.copytree(models_dir / name, destination / name)
    shutil.copytree(models_dir / DETECTOR, destination / IN_THREAD)
    settings_file = destination / IN_THREAD / "model-settings.json"
    settings = json.loads(settings_file.read_text())
    settings["name"] = IN_THREAD
    settings["parameters"]["extra"]["tests_in"] = "thread"
    settings_file.write_text(json.dumps(settings))
    shutil.copy(models_dir / "settings.json", destination / "settings.json")
    return destination


def detector_windows(rows: int, count: int = 20) -> list[np.ndarray]:
    """The S&P 500's last ``count`` windows of ``rows`` consecutive feature rows (the test period)."""
    features = compute_features(load_instrument("sp500").to_numpy()).astype(np.float32)
    first = len(features) - count * rows
    return [features[first + i * rows:first + (i + 1) * rows] for i in range(count)]


class AnsweredCounter:
    """What ``closed_loop`` appends answered requests to: here a count shared with the feeder process."""

    def __init__(self, shared):
        self.shared = shared

    def append(self, _index) -> None:
        self.shared.value += 1  # one writer: the load's event loop


def feed(address: str, detector: str, windows: list[np.ndarray], answered, ready, stopping, results) -> None:
    """In a process of its own (a thread would wait on the load generator's GIL and fall behind): send the
    detector one window for every ``rows`` predictions answered, as a batched pipeline step does."""
    rows, sent, seconds, flagged, errors = len(windows[0]), 0, [], 0, []
    try:
        client = InferenceClient(address)
        ready.set()
        while not stopping.is_set():
            if answered.value < (sent + 1) * rows:
                time.sleep(0.005)
                continue
            started = time.perf_counter()
            try:
                answer = client.infer_grpc(detector, {"features": windows[sent % len(windows)]})
            except grpc.RpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
            else:
                seconds.append(time.perf_counter() - started)
                flagged += int(answer["is_drift"][0])
            sent += 1
    except Exception as error:  # reported to the parent, which stops the run with it
        errors.append(f"feeder failed: {error!r}")
    finally:
        ready.set()
        results.put({"seconds": seconds, "flagged": flagged, "errors": errors,
                     "behind": answered.value // rows - sent})


def _figures(result) -> dict:
    return {"throughput": result.throughput, "p50_ms": 1e3 * result.percentile(50),
            "p99_ms": 1e3 * result.percentile(99), "requests": result.requests, "errors": result.errors}


def run_round(servers: dict[str, MLServerProcess], requests, windows, seconds: float, rate: float | None,
              rng: random.Random) -> dict:
    """Every load once, in a shuffled order: closed-loop clients when ``rate`` is None, else an open loop."""
    server = servers["same"]

    def load_with(answered=None):
        if rate is None:
            return closed_loop(server.grpc_address, requests, CLIENTS, seconds, answered=answered)
        return open_loop(server.grpc_address, requests, rate, seconds, answered=answered)

    out = {}
    for load in rng.sample(["alone", *LOADS], 1 + len(LOADS)):
        if load == "alone":
            out[load] = _figures(load_with())
            continue
        context = multiprocessing.get_context("spawn")
        answered, ready, stopping, queue = context.RawValue("q", 0), context.Event(), context.Event(), context.Queue()
        place, detector = LOADS[load]
        feeder = context.Process(target=feed, args=(servers[place].grpc_address, detector, windows, answered, ready,
                                                    stopping, queue), daemon=True)
        feeder.start()
        if not ready.wait(120):
            raise RuntimeError(f"the feeder process did not start (exit code {feeder.exitcode})")
        result = load_with(AnsweredCounter(answered))
        stopping.set()
        fed = queue.get(timeout=120)
        feeder.join()
        if any(error.startswith("feeder failed") for error in fed["errors"]):
            raise RuntimeError(f"the feeder process failed: {fed['errors']}")
        out[load] = _figures(result) | {
            "windows_tested": len(fed["seconds"]), "windows_flagged": fed["flagged"], "detector_errors": fed["errors"],
            "windows_behind": fed["behind"],
            "detector_median_ms": 1e3 * float(np.median(fed["seconds"])) if fed["seconds"] else None}
    out["order"] = list(out)
    return out


def summarise(runs: list[dict]) -> dict:
    """Per kind of load and detector: the ratios to the load alone, median and range over rounds."""
    out = {}
    for clients in runs[0]:
        out[clients] = {}
        for load in LOADS:
            out[clients][load] = {}
            for key in ("p50_ms", "p99_ms", "throughput"):
                ratios = [run[clients][load][key] / run[clients]["alone"][key] for run in runs]
                out[clients][load][key] = {"median": statistics.median(ratios), "low": min(ratios),
                                           "high": max(ratios)}
    return out


def render_markdown(results: dict) -> str:
    lines = [
        f"Generated by `python -m seldon_market_ab.loadtest.drift_serving` "
        f"({results['rounds']} rounds of {results['seconds']:g} s "
        f"per load, in a shuffled order; one MLServer {results['mlserver']} holding `{MODEL}` and the detector, "
        f"`parallel_workers` 0, {results['cpus']} CPUs shared with the load generator). The detector was sent one "
        f"{results['window_rows']}-row window per {results['window_rows']} predictions answered. Loads: "
        f"`closed loop`, {results['clients']} clients that send their next request as soon as the last is "
        f"answered (the machine saturated); `open loop`, {results['open_loop_rate']:,.0f} requests/s whatever the "
        "answers do (half that throughput: headroom). Ratios: with the detector ÷ alone, median [range] over "
        "rounds.",
        "",
        "| load | prediction | alone (median) | " + " | ".join(f"with the detector: {label}" for label in LOAD_LABELS)
        + " |",
        "|---|---|---|" + "---|" * len(LOADS),
    ]
    verdicts = []
    for clients, ratios in results["ratios"].items():
        runs = [run[clients] for run in results["runs"]]
        alone = {key: statistics.median(run["alone"][key] for run in runs)
                 for key in ("p50_ms", "p99_ms", "throughput")}
        for key, label, value in (("p50_ms", "p50 latency", f"{alone['p50_ms']:.2f} ms"),
                                  ("p99_ms", "p99 latency", f"{alone['p99_ms']:.2f} ms"),
                                  ("throughput", "throughput", f"{alone['throughput']:,.0f} req/s")):
            lines.append(f"| {clients} | {label} | {value} | " + " | ".join(_ratio(ratios[load][key]) for load in LOADS)
                         + " |")
        fed = [(sum(run[load]["windows_tested"] for run in runs),
                statistics.median(run[load]["detector_median_ms"] or math.nan for run in runs)) for load in LOADS]
        lines.append(f"| {clients} | windows tested (median ms each) | | "
                     + " | ".join(f"{n:,} ({ms:.0f} ms)" for n, ms in fed) + " |")
        p99 = ratios["with_detector"]["p99_ms"]["median"]
        verdicts.append(f"{'within' if p99 <= P99_GOAL else 'outside'} it in the {clients}")
    lines += ["", f"Goal: the shipped detector costs predictions at most {100 * (P99_GOAL - 1):.0f}% at p99. "
              f"Measured: {'; '.join(verdicts)}."]
    return "\n".join(lines)


def _ratio(entry: dict) -> str:
    return f"{entry['median']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def measure(args, workdir: Path, repository: Path, requests, windows) -> tuple[list[dict], float]:
    """The rounds, on the model's server and on a second server holding only the detector."""
    rng = random.Random(args.seed)
    own = workdir / "detector-only"
    shutil.copytree(args.models_dir / DETECTOR, own / DETECTOR)
    shutil.copy(args.models_dir / "settings.json", own / "settings.json")
    with MLServerProcess(repository, parallel_workers=None) as server, \
            MLServerProcess(own, parallel_workers=None) as detector_server:
        servers = {"same": server, "own": detector_server}
        rate = HEADROOM * closed_loop(server.grpc_address, requests, CLIENTS, 2.0).throughput  # also warms up
        runs = [{"closed loop": run_round(servers, requests, windows, args.seconds, None, rng),
                 "open loop": run_round(servers, requests, windows, args.seconds, rate, rng)}
                for _ in tqdm(range(args.rounds), desc="drift serving rounds")]
    return runs, rate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load and round")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="market-ab-drift-serving-"))
    repository = prepare_repository(args.models_dir, workdir / "models")
    artifact = LSTMArtifact.load(args.models_dir / MODEL)
    requests = [build_grpc_request(MODEL, {"ohlcv": ohlcv_windows("sp500", [4000], artifact.min_window)})]
    window_rows = json.loads((args.models_dir / DETECTOR / "model-settings.json").read_text()
                             )["parameters"]["extra"]["window_size"]
    windows = detector_windows(int(window_rows))
    try:
        runs, rate = measure(args, workdir, repository, requests, windows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {"rounds": args.rounds, "seconds": args.seconds, "clients": CLIENTS, "open_loop_rate": rate,
               "window_rows": int(window_rows),
               "cpus": os.cpu_count(), "mlserver": version("mlserver"), "ratios": summarise(runs), "runs": runs}
    write_evidence(args.out, "drift-serving", results, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
