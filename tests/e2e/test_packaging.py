"""`pip install .[redis]` gives a working serving install: build the wheel, install it in a fresh virtual environment
with no extra but `redis`, check that no tool library came with it, and serve a router on a real Redis from it (no
source tree on the path)."""

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import redis

from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess

from ..conftest import MIN_WINDOW, PACKAGE_DIR, REPO, add_router, setup_config

FOLDERS = tuple(PACKAGE_DIR.values())
# Plotting, market data, load testing, the drift detector's libraries and the test tools: none of it belongs in a
# serving install. (aiohttp and Jinja2, which the tools use too, come with MLServer itself.)
NOT_SERVING = {"matplotlib", "arch", "backtesting", "tqdm", "pyyaml", "locust", "py-spy", "alibi-detect",
               "scikit-learn", "transformers", "pytest", "ruff", "hypothesis", "kubernetes"}


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
    for package in FOLDERS:  # a copy, so the build leaves nothing in the working tree
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source)
    (wheel,) = dist.glob("seldon_market_ab-*.whl")
    environment = tmp_path_factory.mktemp("venv")
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[redis]")
    return environment, wheel


def test_the_serving_install_has_no_tool_library(installed):
    environment, _ = installed
    python = environment / "bin" / "python"
    run(python, "-m", "pip", "check")
    listed = {line.split()[0].lower() for line in run(python, "-m", "pip", "list").splitlines()[2:]}
    assert {"mlserver", "torch", "scipy", "pydantic", "redis"} <= listed
    assert not listed & NOT_SERVING, sorted(listed & NOT_SERVING)
    located = run(python, "-c", "import seldon_market_ab.routers.stores.redis_store as m; print(m.__file__)",
                  cwd=environment)
    assert located.startswith(str(environment)), located  # from the install, not from a source tree
    tools = subprocess.run([environment / "bin" / "market-ab", "--help"], capture_output=True, text=True, timeout=120)
    assert tools.returncode == 1 and "pip install 'seldon-market-ab[tools]'" in tools.stderr, tools.stderr


def test_the_wheel_carries_the_report_templates(installed):
    """Package data, not code: a template missing from the wheel would fail only when a report is written."""
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(name).name for name in names if "/analysis/report/templates/" in name}
    assert shipped == {path.name for path in (REPO / "analysis" / "report" / "templates").glob("*.j2")}


def test_python_requires_says_the_version_ci_runs():
    """CI runs on the lowest version setup.cfg claims (and the only one: MLServer 1.7.1 and this torch are checked
    together on 3.11)."""
    claimed = setup_config()["options"]["python_requires"]
    lowest = claimed.split(",")[0].removeprefix(">=").strip()
    assert tuple(int(part) for part in lowest.split(".")) == sys.version_info[:2], (claimed, sys.version)


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
