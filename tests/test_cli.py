"""The market-ab console script, as installed by `make`."""

import re
import shutil
import subprocess
import sys

from .conftest import MODELS


def market_ab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "market_ab.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_evaluate_prints_the_stored_table():
    result = market_ab("--models-dir", str(MODELS), "evaluate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "data", "n"]
    assert sum(line.startswith("conservative") for line in lines) == 4  # overall + three instruments


def test_evaluate_without_models_says_what_to_do(tmp_path):
    result = market_ab("--models-dir", str(tmp_path), "evaluate")
    assert result.returncode == 1 and "market-ab train" in result.stderr


def test_train_if_missing_trains_only_what_is_missing(tmp_path):
    for name in ("baseline", "enhanced", "robust", "aggressive", "conservative"):
        shutil.copytree(MODELS / name, tmp_path / name)
    result = market_ab("--models-dir", str(tmp_path), "train", "--if-missing", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lightweight" / "model.pt").exists()
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["lightweight"] * 4


def test_demo_end_to_end(tmp_path):
    """`market-ab demo` on a copy of the repository: market-ab serve starts, the models answer, both pipelines route
    each window to one arm and their routers take the feedback, the experiment splits, and no router state lands in
    the model folders."""
    repository = tmp_path / "models"
    shutil.copytree(MODELS, repository)
    before = sorted(p.relative_to(repository) for p in repository.rglob("*"))
    result = market_ab("--models-dir", str(repository), "demo", "--windows", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "market-ab serve" in out and "ready in" in out and "realised" in out
    for name in ("baseline", "conservative"):
        assert re.search(rf"^{name} .* [0-2]/2$", out, flags=re.MULTILINE), out
    routed = [line.split() for line in out.splitlines() if line.startswith(("mab.pipeline", "contextual.pipeline"))]
    assert len(routed) == 2 * 2 * 2  # two pipelines, two instruments, two windows
    assert all(line[-1] == "applied" for line in routed), routed
    arms = {"mab.pipeline": {"baseline", "enhanced", "lightweight"},
            "contextual.pipeline": {"robust", "aggressive", "conservative", "baseline"}}
    assert all(line[3].split(":")[0] in arms[line[0]] for line in routed), routed
    split = re.search(r"Experiment ab-test .*: (\d+) requests served by (.*)", out)
    assert split and int(split[1]) == 4 and set(re.findall(r"(\w+):1", split[2])) <= {"baseline", "enhanced"}
    assert sorted(p.relative_to(repository) for p in repository.rglob("*")) == before
