"""Seldon Core v2 pipeline semantics in local_seldon/pipeline.py, pure: the plan of the shipped pipelines and of
Seldon's samples, tensor naming, joins, triggers, routing by tensors and batched side steps. Models here are
small async functions (the semantics need nothing else); the gateway's tests run the same plans against real
MLServer models."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import yaml

from seldon_market_ab.local_seldon.manifests import load_documents
from seldon_market_ab.local_seldon.pipeline import Plan, Reference, RowBatcher, select

from ..conftest import REPO

SAMPLES = REPO.parent / "shared" / "reference" / "seldon-samples" / "pipelines"


def plan_of(text: str) -> Plan:
    return Plan.from_manifest(yaml.safe_load(text))


def run(plan: Plan, request: dict, models: dict):
    calls = []

    async def call(step, tensors):
        calls.append((step, sorted(tensors)))
        return models[step](tensors)

    return asyncio.run(plan.run(request, call)), calls


def test_every_seldon_sample_pipeline_has_a_plan():
    for path in sorted(SAMPLES.glob("*.yaml")):
        plan = Plan.from_manifest(yaml.safe_load(path.read_text()))
        order = [step.name for step in plan.steps]
        for i, step in enumerate(plan.steps):  # every step after the steps it reads
            assert all(r.source == plan.name or r.source not in order or order.index(r.source) < i
                       for r in step.inputs + step.triggers), path.name


def test_mab_runs_only_the_arm_the_router_chose_and_feeds_the_drift_side_step():
    documents = load_documents([REPO / "manifests" / "base"])
    mab = Plan.from_manifest(next(doc for _, doc in documents if doc["kind"] == "Pipeline"
                                  and doc["metadata"]["name"] == "mab"))
    window = np.ones((1, 133, 5), np.float32)
    models = {
        "thompson-router": lambda t: {"enhanced": t["ohlcv"], "arm": ["enhanced"], "propensity": [0.3]},
        "baseline": lambda t: {"probability": [0.1]},
        "enhanced": lambda t: {"probability": [float(t["ohlcv"].sum())], "model": ["enhanced:1"]},
        "lightweight": lambda t: {"probability": [0.3]},
    }
    result, calls = run(mab, {"ohlcv": window}, models)
    assert calls == [("thompson-router", ["ohlcv"]), ("enhanced", ["ohlcv"])]  # the router's tensor, renamed
    assert result.output == {"probability": [133 * 5.0], "model": ["enhanced:1"]}
    assert [s.name for s in mab.side_steps] == ["drift-detector"] and mab.side_steps[0].batch_size == 60
    assert result.side_inputs["drift-detector"]["ohlcv"] is window


PIPELINE = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: p}
spec:
  steps:
  - name: a
  - name: b
    inputs: [a.outputs.x]
    tensorMap: {a.outputs.x: renamed}
  - name: c
    inputs: [a, p.inputs.q]
  - name: d
    inputs: [a.inputs]
  output:
    steps: [b, c, d]
"""


def test_tensor_naming_follows_seldon():
    plan = plan_of(PIPELINE)
    models = {"a": lambda t: {"x": 1, "y": 2}, "b": lambda t: {"b_saw": sorted(t)}, "c": lambda t: {"c_saw": sorted(t)},
              "d": lambda t: {"d_saw": sorted(t)}}
    result, calls = run(plan, {"q": 0, "r": 0}, models)
    assert dict(calls) == {"a": ["q", "r"],  # no inputs: the pipeline's
                           "b": ["renamed"],  # one tensor, renamed by tensorMap
                           "c": ["q", "x", "y"],  # every output of a, names kept, and one pipeline input
                           "d": ["q", "r"]}  # what a received
    assert result.output == {"b_saw": ["renamed"], "c_saw": ["q", "x", "y"], "d_saw": ["q", "r"]}


@pytest.mark.parametrize(("join", "expected"), [("inner", None), ("outer", {"x": 1}), ("any", {"x": 1})])
def test_joins_when_one_input_is_missing(join, expected):
    refs = (Reference("a", "outputs"), Reference("b", "outputs"))
    assert select(refs, join, {}, {"a.outputs": {"x": 1}}) == expected


def test_any_takes_the_first_present_and_outer_merges_all():
    refs = (Reference("a", "outputs"), Reference("b", "outputs"))
    available = {"a.outputs": {"x": 1}, "b.outputs": {"x": 9, "y": 2}}
    assert select(refs, "any", {}, available) == {"x": 1}
    assert select(refs, "outer", {}, available) == {"x": 1, "y": 2}  # a repeated name keeps the first
    assert select(refs, "inner", {}, available) == {"x": 1, "y": 2}


def test_triggers_gate_a_step_without_passing_their_tensors():
    plan = plan_of("""
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: t}
spec:
  steps:
  - name: check
  - name: gated
    inputs: [t.inputs]
    triggers: [check.outputs.go]
  output: {steps: [gated]}
""")
    go = {"check": lambda t: {"go": 1, "other": 2}, "gated": lambda t: {"saw": sorted(t)}}
    result, _ = run(plan, {"x": 0}, go)
    assert result.output == {"saw": ["x"]}  # the trigger's tensors are not among the inputs
    stop = {"check": lambda t: {"other": 2}, "gated": lambda t: {"saw": sorted(t)}}
    result, calls = run(plan, {"x": 0}, stop)
    assert result.output is None and [name for name, _ in calls] == ["check"]


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        plan_of("""
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata: {name: c}
spec:
  steps:
  - {name: a, inputs: [b]}
  - {name: b, inputs: [a]}
""")


def test_a_side_step_batch_stacks_rows_until_it_holds_enough():
    batcher = RowBatcher(60)
    windows = [np.full((1, 133, 5), i, np.float32) for i in range(61)]
    released = [batch for window in windows if (batch := batcher.add({"ohlcv": window})) is not None]
    assert len(released) == 1 and released[0]["ohlcv"].shape == (60, 133, 5)
    np.testing.assert_array_equal(released[0]["ohlcv"][:, 0, 0], np.arange(60))  # arrival order


def test_a_batch_refuses_tensors_that_do_not_stack_and_stays_usable():
    batcher = RowBatcher(3)
    batcher.add({"x": np.ones((1, 4))})
    with pytest.raises(ValueError, match="do not stack"):
        batcher.add({"x": np.ones((1, 5))})
    with pytest.raises(ValueError, match="do not stack"):
        batcher.add({"x": np.ones((1, 4)), "dates": np.array(["2020-01-02"])})
    batch = batcher.add({"x": np.zeros((2, 4))})
    assert batch["x"].shape == (3, 4)
