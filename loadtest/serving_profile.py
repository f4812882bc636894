"""Where a served request's time goes: py-spy samples of the MLServer process under each benchmark load.

One MLServer, set up as for ``seldon_market_ab.loadtest.benchmark``, takes each load in turn (8 closed-loop gRPC
clients) while py-spy samples every thread of the server. Each sample goes to the first part in ``PARTS`` (the
specific before the general) that one of its frames names: the forward pass, features, the store
writer's commit, the router's policy, metrics, MLServer's request path, ... A part's share of the
samples, times the server's CPU per request measured over the same run, estimates its microseconds per
request. py-spy counts a thread that waits inside a system call
it cannot see into (an fsync, gRPC's poller) as busy, so shares are of busy samples, not of CPU alone.

    python -m seldon_market_ab.loadtest.serving_profile        # about a minute here: docs/serving-profile.{json,md}
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from importlib.metadata import version
from pathlib import Path

from tqdm.auto import tqdm

from seldon_market_ab.client import build_grpc_request
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.runtimes.artifact import LSTMArtifact

from .benchmark import BATCH, CLIENTS, ROUTER, Workload, prepare_repository
from .grpc_load import closed_loop

# (part, pattern): a sample belongs to the first part whose pattern matches its stack (py-spy's thread name, then
# its frames from the outermost, joined by ";").
PARTS = [
    ("gRPC's poller thread (native code)", r"\(_poll_wrapper\)"),
    ("forward pass (TorchScript)", r"torch/nn/modules/module\.py|LSTMArtifact\.predict_features"),
    ("features", r"compute_features|features_from_ohlcv"),
    ("store reads on the event loop (SQLite)", r"MainThread;.*(sqlite_store|redis_store)\.py"),
    ("store writer: commit (fsync)", r"SQLiteStore\._transaction"),
    ("store writer: propensities", r"RouterState\.derive"),
    ("store writer: rows and state", r"store-writer|StoreWriter\._run|sqlite_store\.py"),
    ("bandit policy and posteriors", r"routers/bandit/"),
    ("metrics (prometheus_client)", r"prometheus_client/"),
    ("raw contents to a Python list and back (MLServer's converters)",
     r"mlserver/grpc/converters\.py|mlserver/raw\.py"),
    ("the Python list to an array (MLServer's NumpyCodec)", r"mlserver/codecs/"),
    ("our request checks", r"seldon_market_ab/protocol\.py|checked_to_types"),
    ("LSTM runtime, other", r"runtimes/"),
    ("router runtime, other", r"routers/"),
    ("MLServer's request path (servicer, data plane, interceptors, pydantic)",
     r"mlserver/(?!cli/)|mlserver_compat\.py|pydantic/"),
    ("event loop and gRPC (asyncio, grpc's Python code)", r"asyncio/|grpc/|Runner\.run"),
]
OTHER = "other"
COMPILED = [(part, re.compile(pattern)) for part, pattern in PARTS]

LOADS = ["echo_window", "lstm_raw", "lstm_batch", "thompson_decisions", "feedback"]
TITLES = {"echo_window": "echo, one window (the baseline every ratio divides by)",
          "lstm_raw": "LSTM, raw windows, batch-1 requests",
          "lstm_batch": f"LSTM, {BATCH}-window requests",
          "thompson_decisions": "thompson-router decisions",
          "feedback": "thompson-router feedback"}


def part_of(stack: str) -> str:
    return next((part for part, pattern in COMPILED if pattern.search(stack)), OTHER)


def read_samples(raw_file: Path) -> Counter:
    """py-spy's raw output (``frame;frame;... count`` per line) summed by part."""
    parts: Counter = Counter()
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            parts[part_of(stack)] += int(count)
    return parts


def profile_load(server, requests, seconds: float, rate: int, raw_file: Path, reuse: bool = True) -> dict:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[loadtest]'")
    recorder = subprocess.Popen([py_spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)),
                                 "--rate", str(rate), "--format", "raw", "--threads", "--output", str(raw_file),
                                 "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cpu = server.cpu_seconds()
    result = closed_loop(server.grpc_address, requests, CLIENTS, seconds, reuse=reuse)
    cpu_us = 1e6 * (server.cpu_seconds() - cpu) / max(result.requests, 1)
    _, errors = recorder.communicate(timeout=60)
    if recorder.returncode != 0 or not raw_file.exists():
        raise RuntimeError(f"py-spy failed ({recorder.returncode}): {errors.decode()[-500:]}")
    parts = read_samples(raw_file)
    total = sum(parts.values())
    return {"requests": result.requests, "throughput": result.throughput, "server_cpu_us": cpu_us,
            "samples": total, "parts": {part: {"share": n / total, "us_per_request": cpu_us * n / total}
                                        for part, n in parts.most_common()}}


def run(models_dir: Path, seconds: float, rate: int, workdir: Path) -> dict:
    repository = prepare_repository(models_dir, workdir / "models", 0)
    workload = Workload(LSTMArtifact.load(models_dir / "baseline"))
    capacity = int(seconds * 6000) + 100
    loads = {}
    with MLServerProcess(repository, parallel_workers=None, state_dir=workdir / "state") as server:
        # past the router's warm-up, as in the benchmark
        closed_loop(server.grpc_address, workload.decisions(ROUTER, "warm", 200), CLIENTS, 60, reuse=False)
        closed_loop(server.grpc_address, Workload.feedback([f"warm-{i}" for i in range(200)]), CLIENTS, 60,
                    reuse=False)
        requests = {"echo_window": workload.window_requests("echo"),
                    "lstm_raw": workload.window_requests("baseline"),
                    "lstm_batch": [build_grpc_request("baseline", {"ohlcv": workload.windows})]}
        for name in tqdm(LOADS, desc="profiling loads"):
            raw_file = workdir / f"{name}.txt"
            if name == "thompson_decisions":
                loads[name] = profile_load(server, workload.decisions(ROUTER, "profiled", capacity), seconds, rate,
                                           raw_file, reuse=False)
            elif name == "feedback":
                ids = [f"profiled-{i}" for i in range(loads["thompson_decisions"]["requests"])]
                loads[name] = profile_load(server, Workload.feedback(ids), seconds, rate, raw_file, reuse=False)
            else:
                closed_loop(server.grpc_address, requests[name], CLIENTS, 0.5)  # warm
                loads[name] = profile_load(server, requests[name], seconds, rate, raw_file)
    return loads


def render_markdown(results: dict) -> str:
    lines = [f"Generated by `python -m seldon_market_ab.loadtest.serving_profile` "
             f"(py-spy {results['py_spy']}, {results['rate']} "
             f"samples/s of every server thread, {results['seconds']:g} s per load, {CLIENTS} closed-loop gRPC "
             "clients, one MLServer as in the benchmark). Share of busy samples, and that share of the server's "
             "CPU per request.", ""]
    names = list(results["loads"])
    parts = [part for part, _ in PARTS] + [OTHER]
    present = [p for p in parts if any(p in results["loads"][n]["parts"] for n in names)]
    lines.append("| part | " + " | ".join(TITLES[n] for n in names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for part in present:
        cells = []
        for name in names:
            share = results["loads"][name]["parts"].get(part)
            cells.append("" if share is None else f"{100 * share['share']:.0f}% ≈ {share['us_per_request']:,.0f} µs")
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| **server CPU per request** | " + " | ".join(
        f"**{results['loads'][n]['server_cpu_us']:,.0f} µs**" for n in names) + " |")
    lines.append("| requests (samples) | " + " | ".join(
        f"{results['loads'][n]['requests']:,} ({results['loads'][n]['samples']:,})" for n in names) + " |")
    lines += ["", "The three largest parts of each load:", ""]
    for name in names:
        largest = list(results["loads"][name]["parts"].items())[:3]  # stored largest first
        lines.append(f"- {TITLES[name]}: " + "; ".join(f"{part} {100 * share['share']:.0f}%"
                                                       for part, share in largest) + ".")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load")
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="market-ab-profile-"))
    seconds = max(1, round(args.seconds))  # py-spy records whole seconds
    results = {"py_spy": version("py-spy"), "rate": args.rate, "seconds": seconds,
               "loads": run(args.models_dir, seconds, args.rate, workdir)}
    write_evidence(args.out, "serving-profile", results, render_markdown)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
