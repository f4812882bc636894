"""Retraining: version folders as Seldon's agent picks them, a walk-forward cut nothing after it reaches, the
registry, the template, and the loop on a running stack (real MLServer, Prometheus and Alertmanager): a drift alert
becomes a new version served beside the old one, routed by name, counted by the outcomes model, with its rollout
begun; a second request meanwhile starts nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seldon_market_ab.cli.demo import crash_windows
from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.repository import version_folder
from seldon_market_ab.local_seldon.serve_process import ServeProcess
from seldon_market_ab.retraining.commands import LEDGER, ledger_records, serving
from seldon_market_ab.retraining.registry import register, versions
from seldon_market_ab.retraining.templates import DEFAULT_TEMPLATE, render
from seldon_market_ab.retraining.training_run import LeakError, RetrainPlan, check_walk_forward, registered_for
from seldon_market_ab.rollouts.audit import AuditLog
from seldon_market_ab.training import dataset as dataset_module
from seldon_market_ab.training.dataset import MarketDataset, SplitDates, ohlcv_windows
from seldon_market_ab.training.train import train_classifier
from seldon_market_ab.training.variants import VARIANTS

from ..conftest import MIN_WINDOW, MODELS, REPO

MARKET_AB = str(Path(sys.executable).parent / "market-ab")


def settings(folder: Path, version: str = "1") -> Path:
    folder.mkdir(parents=True)
    (folder / "model-settings.json").write_text(json.dumps({"name": "m", "parameters": {"version": version}}))
    return folder


# which folder a Model is served from ---------------------------------------------------------------------------

def test_version_folders_are_picked_in_seldons_order(tmp_path):
    """scheduler/pkg/agent/repository/mlserver/mlserver.go, FindModelVersionFolder: a top-level model-settings.json
    whatever the version; else the folder named by it; else, without a version, the highest-numbered."""
    versioned = tmp_path / "versioned"
    for number in ("1", "2", "10"):
        settings(versioned / number)
    assert version_folder(versioned, 2) == versioned / "2"
    assert version_folder(versioned, None) == versioned / "10"
    assert version_folder(versioned, 3) is None
    top = settings(tmp_path / "top")
    settings(top / "versions" / "2")
    assert version_folder(top, 2) == top  # why retrained versions live under versions/, named by storageUri
    assert version_folder(top / "versions", 2) == top / "versions" / "2"


def test_a_registered_version_takes_the_next_number_and_appears_whole(tmp_path):
    model = tmp_path / "m"
    shutil.copytree(MODELS / "lightweight", model)
    assert sorted(versions(model)) == [1]

    def write(staging: Path, version: int) -> dict:
        assert not (model / "versions" / str(version)).exists()  # nothing under its number until it is whole
        shutil.copytree(model, staging, ignore=shutil.ignore_patterns("versions"))
        return {"version": version}

    assert register(model, write)[0] == 2
    assert register(model, write)[0] == 3
    assert sorted(versions(model)) == [1, 2, 3]

    def fail(staging: Path, version: int) -> dict:
        staging.mkdir()
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError):
        register(model, fail)
    assert sorted(p.name for p in (model / "versions").iterdir()) == ["2", "3"]  # no staging left behind


def test_the_template_renders_a_model_an_experiment_and_a_rollout():
    documents = render(DEFAULT_TEMPLATE.read_text(), "enhanced", 2, "http://prometheus:9090")
    assert documents.model["metadata"]["name"] == "enhanced-v2"
    assert documents.model["spec"]["artifactVersion"] == 2
    assert documents.model["spec"]["storageUri"].endswith("/models/enhanced/versions")
    assert documents.experiment["spec"] == {"default": "enhanced", "candidates": [
        {"name": "enhanced", "weight": 100}, {"name": "enhanced-v2", "weight": 0}]}
    spec = documents.rollout.spec
    assert (spec.experiment, spec.baseline, spec.candidate) == ("enhanced-retrain", "enhanced", "enhanced-v2")
    assert documents.experiment["metadata"]["name"] == "enhanced-retrain"
    with pytest.raises(ValueError, match="has no Experiment, Rollout"):
        render("kind: Model\nmetadata: {name: x}\n", "enhanced", 2, "http://p")


def test_after_a_promotion_the_next_version_is_compared_with_and_rolled_out_against_the_promoted_one(tmp_path):
    ledger = AuditLog(tmp_path / LEDGER)
    assert serving(ledger, "enhanced") == ("enhanced", None)
    for variant, result, version in (("enhanced", "promoted", 2), ("enhanced", "rolled_back", 3),
                                     ("lightweight", "promoted", 5)):
        ledger.append({"event": "end", "variant": variant, "result": result, "candidate": f"{variant}-v{version}",
                       "version": version})
    assert serving(ledger, "enhanced") == ("enhanced-v2", 2)
    documents = render(DEFAULT_TEMPLATE.read_text(), "enhanced", 4, "http://p", "enhanced-v2")
    assert [c["name"] for c in documents.experiment["spec"]["candidates"]] == ["enhanced-v2", "enhanced-v4"]
    assert documents.experiment["spec"]["default"] == "enhanced"  # still the traffic for enhanced
    assert documents.rollout.spec.baseline == "enhanced-v2"


def test_a_version_registered_before_a_crash_is_found_by_its_alert(tmp_path):
    model = tmp_path / "lightweight"
    shutil.copytree(MODELS / "lightweight", model)

    def write(staging: Path, version: int) -> dict:
        shutil.copytree(model, staging, ignore=shutil.ignore_patterns("versions"))
        metadata = json.loads((staging / "metadata.json").read_text())
        metadata.update(version=str(version), training_window={"cut": "2018-06-29"}, retraining={
            "as_of": "2018-12-31", "cut": "2018-06-29", "trigger": {"alert": "a@1"}, "comparison": {"n": 1}})
        (staging / "metadata.json").write_text(json.dumps(metadata))
        return metadata

    register(model, write)
    found = registered_for(tmp_path, "lightweight", "a@1")
    assert found["version"] == 2 and found["cut"] == "2018-06-29" and found["versions"] == [1, 2]
    assert registered_for(tmp_path, "lightweight", "b@2") is None


def test_the_cli_loads_no_torch_until_a_retraining_runs():
    """`market-ab alerts receive` builds the same parser: on a cluster its pod has 256 MiB."""
    code = ("import sys; from seldon_market_ab.cli.commands import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    from seldon_market_ab.retraining import registry
    from seldon_market_ab.runtimes.artifact import METADATA_FILE

    assert registry.METADATA_FILE == METADATA_FILE


# never a row after the cut ---------------------------------------------------------------------------------------

def test_a_retrained_version_never_saw_a_row_after_its_cut(monkeypatch):
    """Every row after the cut replaced by nonsense: the samples trained and validated on are the same arrays, and
    the trained weights the same, bit for bit. Nothing after the cut reached the model."""
    cut = "2014-06-30"
    plan_split = SplitDates.walk_forward(cut)
    clean = MarketDataset(30, plan_split)
    check_walk_forward(clean)
    original = dataset_module.load_instrument

    def vandalised(name: str) -> pd.DataFrame:
        frame = original(name).copy()
        after = frame.index > pd.Timestamp(cut)
        frame.loc[after, :] = frame.loc[after, :].to_numpy()[::-1] * 3.0  # other prices, other labels
        return frame

    monkeypatch.setattr(dataset_module, "load_instrument", vandalised)
    changed = MarketDataset(30, plan_split)
    for split in ("train", "validation"):
        assert np.array_equal(clean[split].features, changed[split].features)
        assert np.array_equal(clean[split].label, changed[split].label)
        assert clean[split].label_date.max() <= np.datetime64(cut)
    assert not np.array_equal(clean["test"].label, changed["test"].label)  # the nonsense is there, after the cut
    variant = VARIANTS["lightweight"].__class__(**{**VARIANTS["lightweight"].__dict__, "max_epochs": 2})
    models = [train_classifier(variant, data, progress=False)[0] for data in (clean, changed)]
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_split_that_reads_past_its_cut_is_refused():
    leaky = MarketDataset(30, SplitDates(validation_start="2013-06-30", test_start="2014-07-01", cut="2014-06-30"))
    check_walk_forward(leaky)
    leaky.dates = SplitDates(validation_start="2013-06-30", test_start="2014-07-01", cut="2014-01-31")
    with pytest.raises(LeakError, match="read a row after the cut 2014-01-31"):
        check_walk_forward(leaky)


def test_the_cut_is_counted_in_trading_days_before_as_of():
    plan = RetrainPlan("lightweight", "2018-12-31", holdout_days=126)
    assert plan.cut() == "2018-06-29"
    assert plan.split().test_end == "2019-01-01"
    data = MarketDataset(30, SplitDates.walk_forward("2016-06-30", test_end="2016-12-31"))
    assert data["test"].label_date.max() < np.datetime64("2016-12-31")  # as_of is the last day known


# the loop on a running stack --------------------------------------------------------------------------------------

FAST_ROLLOUT = {"steps: [10, 25, 50]": "steps: [50]", "interval: 1m": "interval: 1s", "minOutcomes: 200":
                "minOutcomes: 1000"}


def ledger_lines(state: Path) -> list[dict]:
    return ledger_records(AuditLog(state / LEDGER))


def get(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


def test_a_drift_alert_becomes_a_new_version_served_beside_the_old_and_its_rollout(tmp_path):
    models, state = tmp_path / "models", tmp_path / "retrain"
    shutil.copytree(MODELS, models)
    template = DEFAULT_TEMPLATE.read_text()
    for old, new in FAST_ROLLOUT.items():
        template = template.replace(old, new)
    (tmp_path / "template.yaml").write_text(template)
    serve = ServeProcess(models, [REPO / "manifests" / "overlays" / "dev"], prometheus=True, alertmanager=True,
                         log_path=tmp_path / "serve.log")
    command = (f"{MARKET_AB} retrain lightweight --models-dir {models} --state-dir {state} --template "
               f"{tmp_path / 'template.yaml'} --admin http://127.0.0.1:{serve.admin_port} --prometheus "
               f"http://127.0.0.1:{serve.prometheus_port} --no-progress")
    serve.extra_args += ["--alert-for", "1s", "--alerts-dir", str(tmp_path / "alerts"), "--on-retrain", command]
    with serve:
        client = InferenceClient(serve.grpc_address)
        assert client.infer("drift-detector", {"ohlcv": crash_windows()}).outputs["is_drift"][0] == 1
        # a watch on the admin port: answers once the rollout has made its first change (generation 2), which it
        # makes after the retraining has written `applied`
        json.loads(urllib.request.urlopen(f"{serve.admin_url}/admin/experiments/lightweight-retrain?after=1&wait=300",
                                          timeout=310).read())
        lines = ledger_lines(state)
        assert [r["event"] for r in lines] == ["start", "registered", "applied"], (lines, serve.output())
        start, registered, applied = lines
        assert start["alert"].startswith(get(f"{serve.admin_url}/alerts/retrain")["requests"][0]["key"])
        assert registered["version"] == 2 and registered["cut"] == "2018-06-29"
        assert registered["training_window"]["validation"]["last_label"] <= registered["cut"]
        comparison = registered["comparison"]
        assert comparison["difference"]["n"] == 250 and comparison["days"]["first"] > registered["cut"]

        # served beside the old version and routed by name; each answer names its artifact's variant:version
        window = {"ohlcv": ohlcv_windows("sp500", np.array([5000]), MIN_WINDOW)}
        assert client.infer("lightweight-v2", window).outputs["model"] == ["lightweight:2"]
        # the experiment now splits the Model's traffic (its rollout has begun); a sticky route reaches each
        assert client.infer("lightweight", window, route=":lightweight_1:").outputs["model"] == ["lightweight:1"]
        listed = {m["name"]: m.get("spec") for m in get(f"{serve.admin_url}/admin/models")["models"]}
        assert listed["lightweight-v2"]["artifactVersion"] == 2
        # counted by the outcomes model, which was not told its arms
        answer = client.infer("outcomes", {"request_id": np.array(["r-1"], dtype=object),
                                           "model": np.array(["lightweight-v2:2"], dtype=object),
                                           "correct": np.array([1], dtype=np.int32)})
        assert answer.outputs["status"] == ["recorded"]
        experiment = get(f"{serve.admin_url}/admin/experiments/lightweight-retrain")["spec"]
        assert experiment["default"] == "lightweight"
        assert {c["name"] for c in experiment["candidates"]} == {"lightweight", "lightweight-v2"}
        client.close()

        # another request while this one's rollout runs starts nothing
        done = subprocess.run([*command.split(), "--alert", "another"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and json.loads(done.stdout)["event"] == "skipped", done.stderr
    # serve stopped: the rollout was ended with the baseline at 100, and the run recorded its end
    lines = ledger_lines(state)
    assert lines[-1]["event"] == "end" and lines[-1]["result"] == "aborted", lines
    assert sorted(versions(models / "lightweight")) == [1, 2]
    # the same alert again: handled already, nothing trained
    done = subprocess.run([*command.split(), "--alert", start["alert"]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "handled already" in done.stderr, done.stderr
    assert sorted(versions(models / "lightweight")) == [1, 2]
