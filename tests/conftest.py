"""Shared fixtures (a copy of the model repository served by a real MLServer process), and the tests' kinds.

Each test's kind is its folder, and its marker: ``tests/unit`` (pure logic and single modules in process, no
server), ``tests/integration`` (a real MLServer, Redis, Prometheus, Alertmanager, ``market-ab serve``, a fake
Kubernetes API server, or a model trained), ``tests/e2e`` (the demo, Locust, the packaging, the scripts that write
``docs/`` run end to end, and the docs checked against the code). The doctests of the pure modules are unit tests.
"""

from __future__ import annotations

import configparser
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.dataset import MarketDataset, ohlcv_windows
from seldon_market_ab.training.variants import VARIANTS

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
MARKET_AB = (sys.executable, "-m", "seldon_market_ab.cli")  # the market-ab command, in this interpreter


def setup_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


# Each installed package and the repository folder it is built from (setup.cfg's package_dir): a folder added there
# is checked wherever this is used.
PACKAGE_DIR = {name.strip(): folder.strip() for name, folder in
               (line.split("=") for line in setup_config()["options"]["package_dir"].strip().splitlines())}
LSTM_NAMES = tuple(VARIANTS)
# Figures of the shipped artifacts, read from them rather than typed in.
BASELINE = LSTMArtifact.load(MODELS / "baseline")
MIN_WINDOW, SEQUENCE_LENGTH, N_FEATURES = BASELINE.min_window, BASELINE.sequence_length, BASELINE.n_features


KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items):
    tests = Path(__file__).parent
    for item in items:
        path = Path(item.path)
        kind = path.relative_to(tests).parts[0] if path.is_relative_to(tests) else "unit"  # a doctest
        assert kind in KINDS, f"{path}: a test belongs in one of tests/{{{','.join(KINDS)}}}/"
        item.add_marker(kind)


def copy_repository(destination: Path, names=LSTM_NAMES) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(MODELS / name, destination / name)
    return destination


def running(pid: int) -> bool:
    """Alive and not a zombie (nothing in a container need reap an orphan that has exited)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def rest_body(inputs: dict[str, np.ndarray]) -> bytes:
    """Standard JSON, which has neither NaN nor Inf: MLServer's own codec writes NaN as null, and a value
    beyond FP32's range (1e39) is how an Inf reaches an FP32 tensor over REST."""
    tensors = []
    for name, array in inputs.items():
        datatype = {"f": "FP32", "i": "INT32"}[array.dtype.kind]
        data = [None if np.isnan(v) else 1e39 if np.isinf(v) else v for v in array.ravel().tolist()]
        tensors.append({"name": name, "datatype": datatype, "shape": list(array.shape), "data": data})
    return json.dumps({"inputs": tensors}, allow_nan=True).encode()


def triton_body(inputs: dict[str, np.ndarray], binary: bool | set[str] = True, outputs: dict[str, bool] | None = None,
                request_id: str = "") -> tuple[bytes, int | None]:
    """A REST request body as NVIDIA's tritonclient builds it (a third party's encoder, so tests check the binary data
    extension as clients speak it), and its JSON length (None: no binary input, the body is all JSON). ``binary``:
    every input as bytes, or the names of those that are; ``outputs``: names and whether each comes back as bytes
    (None names none, so tritonclient asks for every output as bytes)."""
    import tritonclient.http as triton
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        array = np.asarray(value)
        array = array.astype(object) if array.dtype.kind in "SU" else array
        tensors.append(triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype)))
        tensors[-1].set_data_from_numpy(array, binary_data=name in binary if isinstance(binary, set) else binary)
    requested = None if outputs is None else [triton.InferRequestedOutput(n, binary_data=b) for n, b in outputs.items()]
    return triton.InferenceServerClient.generate_request_body(tensors, outputs=requested, request_id=request_id)


@pytest.fixture(scope="session")
def artifacts() -> dict[str, LSTMArtifact]:
    return {name: LSTMArtifact.load(MODELS / name) for name in LSTM_NAMES}


@pytest.fixture(scope="session")
def dataset() -> MarketDataset:
    return MarketDataset(sequence_length=VARIANTS["baseline"].sequence_length)


@pytest.fixture(scope="session")
def heldout(dataset, artifacts):
    """Real test-period OHLCV windows, keyed by instrument: (windows [n, min_window, 5], sample indices)."""
    test = dataset["test"]
    rows = artifacts["baseline"].min_window
    out = {}
    for instrument in ("sp500", "nasdaq", "goog"):
        index = np.flatnonzero(test.instrument == instrument)[::97][:12]
        out[instrument] = (ohlcv_windows(instrument, test.ohlcv_end[index], rows), index)
    return out


def _serve(tmp_path_factory, workers: int):
    repository = copy_repository(tmp_path_factory.mktemp(f"models-w{workers}"))
    with MLServerProcess(repository, parallel_workers=workers) as server:
        client = InferenceClient(server.grpc_address, server.http_url)
        yield server, client
        client.close()


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """All six LSTMs in one MLServer, in-process (``parallel_workers`` 0)."""
    yield from _serve(tmp_path_factory, 0)


@pytest.fixture(scope="session")
def served_workers(tmp_path_factory):
    """All six LSTMs in one MLServer with two parallel workers."""
    yield from _serve(tmp_path_factory, 2)


class RedisServer:
    """A real redis-server on a loopback port, with ``appendonly yes`` and ``appendfsync always`` (every write on
    disk before Redis answers), that a test can kill, stop and restart on the same port and data."""

    def __init__(self, workdir: Path):
        from seldon_market_ab.local_seldon.mlserver_process import free_port

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server is not installed; `.ci/run` installs it with apt-get install redis-server")
        self.port, self.workdir, self.process = free_port(), workdir, None
        workdir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import subprocess
        import time

        import redis

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port (``.ci/run`` installs the Debian package)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


def set_extra(folder: Path, name: str | None = None, **extra) -> Path:
    """Change ``parameters.extra`` (and the ``name``) of the model in ``folder``."""
    settings = json.loads((folder / "model-settings.json").read_text())
    settings["name"] = name or settings["name"]
    settings["parameters"]["extra"].update(extra)
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return folder


def add_router(repository: Path, name: str, base: str, **extra) -> Path:
    """Copy ``models/<base>`` into ``repository/<name>`` with ``extra`` settings changed."""
    shutil.copytree(MODELS / base, repository / name)
    return set_extra(repository / name, name, **extra)
