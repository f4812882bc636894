"""What ``market-ab serve`` takes from the manifests, and the model repository it prepares for MLServer."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from seldon_market_ab.local_seldon.deployment import Deployment, DeploymentError
from seldon_market_ab.local_seldon.manifests import load_documents
from seldon_market_ab.local_seldon.repository import prepare_repository

from ..conftest import MODELS, REPO


@pytest.fixture(scope="module")
def dev():
    return Deployment.from_documents(load_documents([REPO / "manifests/overlays/dev"]))


def test_the_dev_overlay_deploys_both_pipelines_the_experiment_and_model_parameters(dev):
    assert set(dev.plans) == {"mab", "contextual"} and set(dev.experiments) == {"ab-test"}
    assert [s.name for s in dev.plans["mab"].side_steps] == ["drift-detector"]
    assert dev.model_parameters["baseline"] == {"torch_threads": "1"}
    assert "Server/mlserver-market-ab" in dev.not_applied and "PrometheusRule/market-ab" in dev.not_applied
    assert {"thompson-router", "regime-router", "drift-detector", "robust"} <= dev.models


def _documents(text: str):
    return [("test.yaml", doc) for doc in yaml.safe_load_all(text)]


@pytest.mark.parametrize("text, expected", [
    ("kind: Pipeline\nmetadata: {name: p}\nspec: {steps: [{name: a, batch: {size: 2, windowMs: 10}}]}",
     "spec.steps[0].batch.windowMs: not implemented"),
    ("kind: Pipeline\nmetadata: {name: p}\nspec: {steps: [{name: a}], input: {externalInputs: [q.outputs]}}",
     "spec.input: not implemented"),
    ("kind: Model\nmetadata: {name: m}\nspec: {storageUri: gs://x, explainer: {type: anchor_tabular}}",
     "spec.explainer: not implemented"),
    ("kind: Experiment\nmetadata: {name: e}\nspec: {resourceType: pipeline, candidates: [{name: nowhere, weight: 1}]}",
     "names pipeline 'nowhere'"),
    ("kind: Experiment\nmetadata: {name: e}\nspec: {default: c, candidates: [{name: a, weight: 1}]}",
     "'c' is not a candidate"),
])
def test_fields_the_gateway_does_not_implement_are_refused(text, expected):
    with pytest.raises(DeploymentError) as caught:
        Deployment.from_documents(_documents("apiVersion: mlops.seldon.io/v1alpha1\n" + text))
    assert expected in str(caught.value) and "test.yaml" in str(caught.value)


def test_model_parameters_are_written_into_parameters_extra_of_a_linked_copy(tmp_path):
    models = tmp_path / "models"
    (models / "m").mkdir(parents=True)
    original = {"name": "m", "implementation": "x.Y", "parameters": {"extra": {"kept": 1, "torch_threads": 4}}}
    (models / "m" / "model-settings.json").write_text(json.dumps(original))
    (models / "m" / "model.pt").write_bytes(b"weights")
    (models / "settings.json").write_text("{}")
    prepared = prepare_repository(models, {"m": {"torch_threads": "1"}}, tmp_path / "prepared")
    settings = json.loads((prepared / "m" / "model-settings.json").read_text())
    assert settings["parameters"]["extra"] == {"kept": 1, "torch_threads": "1"}
    assert (prepared / "m" / "model.pt").resolve() == (models / "m" / "model.pt").resolve()
    assert (prepared / "settings.json").exists()
    assert json.loads((models / "m" / "model-settings.json").read_text()) == original  # never written to
    with pytest.raises(ValueError, match="no model folder for absent"):
        prepare_repository(models, {"absent": {}}, tmp_path / "again")


def test_a_pipeline_reading_a_batched_step_is_refused():
    """Seldon's own sample takes its batched drift step into the output; here batched steps are side steps."""
    sample = REPO.parent / "shared/reference/seldon-samples/pipelines/iris-async-drift.yaml"
    with pytest.raises(DeploymentError, match="output reads the batched step 'iris-drift-detect'"):
        Deployment.from_documents(load_documents([sample]))


@pytest.mark.parametrize("text, expected", [
    ("kind: Pipeline\nmetadata: {name: p}\nspec: {steps: [{name: a}], output: {steps: [a]}}\n---\n"
     "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec: {steps: [{name: b}]}",
     "defined twice"),
    ("kind: Experiment\nmetadata: {name: e1}\nspec: {default: a, candidates: [{name: a, weight: 1}]}\n---\n"
     "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: e2}\n"
     "spec: {default: a, candidates: [{name: a, weight: 1}]}", "is also Experiment/e1's"),
    ("kind: Experiment\nmetadata: {name: e}\nspec: {candidates: [{name: a, weight: ten}]}", "malformed"),
])
def test_what_would_be_ambiguous_or_lost_is_refused(text, expected):
    with pytest.raises(DeploymentError) as caught:
        Deployment.from_documents(_documents("apiVersion: mlops.seldon.io/v1alpha1\n" + text))
    assert expected in str(caught.value)


def test_the_fields_seldons_agent_drops_are_dropped(tmp_path):
    models = tmp_path / "models"
    (models / "m").mkdir(parents=True)
    (models / "m" / "model-settings.json").write_text(json.dumps({
        "name": "m", "implementation": "x.Y", "max_batch_size": 16, "max_batch_time": 0.01,
        "inputs": [{"name": "ohlcv", "datatype": "FP32", "parameters": {"content_type": "np"}}]}))
    settings = json.loads((prepare_repository(models, {}, tmp_path / "p") / "m" / "model-settings.json").read_text())
    assert "max_batch_size" not in settings and "max_batch_time" not in settings
    assert settings["inputs"] == [{"name": "ohlcv", "datatype": "FP32"}]  # the agent keeps no tensor parameters


def test_the_outcomes_model_counts_the_repositorys_predictors_unless_its_model_names_arms(tmp_path):
    """Under ``market-ab serve`` a model added beside the shipped ones (an experiment's candidate) is an arm of the
    outcomes model without a setting: every model whose metadata declares a ``direction`` output."""
    models = tmp_path / "models"
    for name in ("baseline", "baseline-copy", "thompson-router", "outcomes"):
        shutil.copytree(MODELS / ("baseline" if name == "baseline-copy" else name), models / name)
    copy = json.loads((models / "baseline-copy" / "model-settings.json").read_text())
    (models / "baseline-copy" / "model-settings.json").write_text(json.dumps({**copy, "name": "baseline-copy"}))

    def arms(prepared):
        return json.loads((prepared / "outcomes" / "model-settings.json").read_text())["parameters"]["extra"]["arms"]

    assert arms(prepare_repository(models, {}, tmp_path / "p1")) == "baseline,baseline-copy"
    assert arms(prepare_repository(models, {"outcomes": {"arms": "robust"}}, tmp_path / "p2")) == "robust"
