"""`pip install .[redis]` gives a working install: build the wheel, install it in a fresh virtual environment
and serve a router on a real Redis from it (no source tree on the path)."""

import shutil
import subprocess
import sys
import venv

import numpy as np
import pytest
import redis

from loadtest.client import InferenceClient
from local_seldon.mlserver_process import MLServerProcess

from .conftest import MIN_WINDOW, REPO, add_router


def _packages() -> tuple[str, ...]:
    """The top-level packages setup.cfg ships (not a list of our own: a package added there is built here too)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return tuple(name for name in config["options.packages.find"]["include"].split() if "." not in name)


PACKAGES = _packages()


def run(*command, cwd=None, timeout=900):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the wheel and its `redis` extra installed."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in PACKAGES:  # a copy, so the build leaves nothing in the working tree
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source)
    (wheel,) = dist.glob("seldon_market_ab-*.whl")
    environment = tmp_path_factory.mktemp("venv")
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[redis]")
    return environment, wheel


def test_the_install_is_consistent_and_has_no_development_tools(installed):
    environment, _ = installed
    python = environment / "bin" / "python"
    run(python, "-m", "pip", "check")
    listed = {line.split()[0].lower() for line in run(python, "-m", "pip", "list").splitlines()[2:]}
    assert {"mlserver", "torch", "scipy", "pydantic", "redis", "alibi-detect"} <= listed
    development = {"pytest", "ruff", "hypothesis", "locust"}
    assert not listed & development, sorted(listed & development)
    assert "market-ab" in run(environment / "bin" / "market-ab", "--help")
    located = run(python, "-c", "import routers.stores.redis_store as m; print(m.__file__)", cwd=environment)
    assert located.startswith(str(environment)), located  # from the install, not from a source tree


def test_a_router_on_redis_serves_from_the_installed_wheel(installed, tmp_path, redis_url):
    environment, _ = installed
    redis.Redis.from_url(redis_url).flushdb()
    repository = tmp_path / "models"
    add_router(repository, "thompson-router", "thompson-router", store=redis_url)
    ohlcv = np.tile(np.array([100.0, 101.0, 99.0, 100.5, 1e6], np.float32), (1, MIN_WINDOW, 1))
    with MLServerProcess(repository, executable=environment / "bin" / "mlserver") as server:
        client = InferenceClient(server.grpc_address)
        answer = client.infer_grpc("thompson-router", {"ohlcv": ohlcv}, request_id="from-the-wheel")
        status = client.infer_grpc("thompson-router", {"decision_id": np.array(["from-the-wheel"], dtype=object),
                                                       "reward": np.array([1.0])})["status"]
        client.close()
    assert answer["arm"][0] in ("baseline", "enhanced", "lightweight") and status == ["applied"]
    keys = redis.Redis.from_url(redis_url).keys("market-ab:thompson-router:*")
    assert keys, "the decision and feedback should be in Redis"
