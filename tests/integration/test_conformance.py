"""Clients nobody here wrote against our servers: NVIDIA's tritonclient (HTTP, gRPC) and KServe's SDK (REST, gRPC).

Our own tests speak the protocol with our own client, which can share our mistakes. Here ``loadtest/conformance.py``
runs in ``.venv-clients`` (``make clients``; kserve's dependencies stay out of the serving venv), one process per
client, against a plain ``mlserver start`` of a copy of ``models/`` and against ``market-ab serve`` on the dev
overlay, on real market windows. Every check it prints is judged here; a failure lists each failed check with its
client and call. Checks a client cannot make (KServe's SDK has no metadata call; some clients expose no response
headers) are printed as not applicable, with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.local_seldon.serve_process import ServeProcess
from seldon_market_ab.training.dataset import ohlcv_windows
from seldon_market_ab.training.variants import VARIANTS

from ..conftest import MODELS, REPO

CLIENTS_PYTHON = REPO / ".venv-clients" / "bin" / "python"
SCRIPT = REPO / "loadtest" / "conformance.py"
CLIENTS = ("tritonclient.http", "tritonclient.grpc", "kserve.rest", "kserve.grpc")
SERVERS = ("mlserver", "market-ab serve")
LSTMS = tuple(VARIANTS)
ROUTERS = ("thompson-router", "regime-router")
DETECTOR = "drift-detector"
FEEDBACK_ROUTER, FEEDBACK_PIPELINE = "thompson-router", "mab"  # the router that decides mab's requests
MIN_WINDOW = json.loads((MODELS / "baseline" / "metadata.json").read_text())["min_window"]
DRIFT_WINDOW = json.loads((MODELS / DETECTOR / "model-settings.json").read_text())["parameters"]["extra"]["window_size"]
INSTRUMENT = "sp500"
SCRIPT_TIMEOUT = 600  # seconds for one client's whole run; a few hundred calls take well under a minute
MIN_CHECKS = 40  # fewer lines than this means the script stopped early


def manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / "manifests" / "base" / name).read_text()) if d]


def gateway_arguments() -> list[str]:
    """The pipelines and the experiment the dev overlay deploys, read from its manifests."""
    pipelines = [p["metadata"]["name"] for p in manifests("pipelines.yaml") if p["kind"] == "Pipeline"]
    experiment = next(e for e in manifests("experiment.yaml") if e["kind"] == "Experiment")
    candidates = [c["name"] for c in experiment["spec"]["candidates"]]
    default = experiment["spec"].get("default")
    assert FEEDBACK_PIPELINE in pipelines, pipelines
    return ["--seldon", "--pipelines", ",".join(pipelines), "--experiment", experiment["metadata"]["name"],
            "--candidates", ",".join(candidates), "--feedback-pipeline", FEEDBACK_PIPELINE,
            *(["--pin", default] if default else [])]


@pytest.fixture(scope="module")
def clients_python() -> Path:
    """Fails, never skips: a suite that quietly does not run is worse than none."""
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: `make clients` builds the clients' venv (`make test` does it "
                    "first)")
    return CLIENTS_PYTHON


@pytest.fixture(scope="module")
def windows(dataset, tmp_path_factory) -> Path:
    """Real test-period S&P 500 windows, and broken copies of one: the script's ``--inputs``."""
    test = dataset["test"]
    ends = test.ohlcv_end[test.instrument == INSTRUMENT]
    window = ohlcv_windows(INSTRUMENT, ends[-1:], MIN_WINDOW)
    negative, nan = window.copy(), window.copy()
    negative[0, -1, 3] = -negative[0, -1, 3]  # the last close
    nan[0, -1, 3] = np.nan
    path = tmp_path_factory.mktemp("conformance") / "windows.npz"
    np.savez(path, ohlcv=window, drift=ohlcv_windows(INSTRUMENT, ends[-DRIFT_WINDOW:], MIN_WINDOW),
             short=window[:, -5:, :], negative=negative, nan=nan)
    return path


class Target:
    """A running server, the script's arguments for it, and each client's parsed lines once it has run."""

    def __init__(self, name: str, rest: str, grpc: str, extra: list[str], log):
        self.name, self.rest, self.grpc, self.extra, self.log = name, rest, grpc, extra, log
        self.results: dict[str, list[dict]] = {}


@pytest.fixture(scope="module", params=SERVERS, ids=lambda server: server.replace(" ", "-"))
def target(request, tmp_path_factory):
    """One server at a time (two cores): a plain ``mlserver start``, then ``market-ab serve``."""
    folder = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    if request.param == "mlserver":
        repository = folder / "models"
        shutil.copytree(MODELS, repository, ignore=shutil.ignore_patterns("__pycache__"))
        # routers keep their state in the server's own temporary MARKET_AB_STATE_DIR
        with MLServerProcess(repository, parallel_workers=0, ready_timeout=300) as server:
            yield Target(request.param, server.http_url, server.grpc_address, [], server.log_tail)
    else:
        with ServeProcess(MODELS, [REPO / "manifests" / "overlays" / "dev"], seed=0, log_path=folder / "serve.log",
                          ready_timeout=300, env={"PYTHONPATH": str(REPO)}) as serve:
            yield Target(request.param, serve.http_url, serve.grpc_address, gateway_arguments(), serve.output)


def run_client(target: Target, client: str, python: Path, inputs: Path) -> list[dict]:
    """The client's checks against the target, run once and kept (the agreement test reads them all)."""
    if client not in target.results:
        command = [str(python), "-I", str(SCRIPT), "--client", client, "--rest", target.rest, "--grpc", target.grpc,
                   "--inputs", str(inputs), "--lstms", ",".join(LSTMS), "--routers", ",".join(ROUTERS),
                   "--detectors", DETECTOR, "--feedback-router", FEEDBACK_ROUTER, *target.extra]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, cwd=REPO)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert done.returncode == 0 and len(lines) >= MIN_CHECKS, (
            f"{client} against {target.name} exited {done.returncode} after {len(lines)} checks in "
            f"{time.perf_counter() - started:.0f} s:\n{done.stderr[-3000:]}\nserver:\n{target.log()}")
        target.results[client] = lines
    return target.results[client]


def listing(lines: list[dict]) -> str:
    return "\n".join(f"  - [{line['client']}] {line['call']}: {line['detail']}" for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_client_conforms(clients_python, target, client, windows):
    lines = run_client(target, client, clients_python, windows)
    failed = [line for line in lines if line["ok"] is False]
    not_applicable = [line for line in lines if line["ok"] is None]
    if not_applicable:
        print(f"not applicable with {client}:\n{listing(not_applicable)}")
    assert not failed, (f"{client} against {target.name}: {len(failed)} of {len(lines)} checks failed\n"
                        f"{listing(failed)}")


@pytest.mark.slow
def test_clients_agree(clients_python, target, windows):
    """Every client, whatever its encoding, gets the same probability for the same window from the same model."""
    seen: dict[str, dict[str, float]] = {}
    for client in CLIENTS:
        for line in run_client(target, client, clients_python, windows):
            if line["ok"] and "value" in line and line["call"].startswith("infer "):
                model = line["call"].split()[1]
                if model in LSTMS:
                    seen.setdefault(model, {})[f"{client}: {line['call']}"] = line["value"]
    assert set(seen) == set(LSTMS), f"no answer at all from {sorted(set(LSTMS) - set(seen))}"
    disagree = {model: values for model, values in seen.items()
                if not np.allclose(list(values.values()), next(iter(values.values())), rtol=1e-6, atol=1e-7)}
    assert not disagree, "probabilities differ between clients:\n" + "\n".join(
        f"  {model}: {values}" for model, values in disagree.items())
