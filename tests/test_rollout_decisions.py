"""A rollout's document, gates and decisions, pure (``rollouts/``): the statistics on aggregated counts, and the
loop's decisions driven by seeded simulations of each arm (the same ``c.decide`` that ``market-ab rollout run``
calls)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rollouts import controller as c
from rollouts import gates as g
from rollouts.document import Rollout, RolloutError, RolloutSpec
from rollouts.simulation import ArmModel, simulate
from seldon_market_ab.metrics import LATENCY_BUCKETS

SPEC = RolloutSpec(experiment="ab", baseline="baseline", candidate="enhanced", steps=(10, 25, 50), interval=5,
                   minOutcomes=50)


def buckets(latencies_ms) -> tuple:
    edges = [*LATENCY_BUCKETS, math.inf]
    counts = np.bincount(np.searchsorted(edges, np.asarray(latencies_ms) / 1e3), minlength=len(edges))
    return tuple(zip(edges, np.cumsum(counts).tolist(), strict=True))


def arm(requests=500, errors=0, outcomes=0, correct=0, latency_ms=8.0, rng=None) -> g.ArmFigures:
    rng = rng or np.random.default_rng(0)
    latencies = latency_ms * np.exp(0.3 * rng.standard_normal(requests - errors))
    return g.ArmFigures(requests, errors, outcomes, correct, 0.0, buckets(latencies))


# the document -------------------------------------------------------------------------------------------------------

def test_a_full_document_reads_with_its_field_names():
    rollout = Rollout.from_yaml("""
apiVersion: market-ab.io/v1alpha1
kind: Rollout
metadata: {name: faulty-canary}
spec:
  experiment: fault-test
  baseline: baseline
  candidate: faulty
  steps: [5, 20, 50, 80]
  interval: 1m30s
  minOutcomes: 200
  gates: {errorRate: {margin: 0.02}, latency: {ratio: 1.5, slackMs: 10}, accuracy: {alpha: 0.01}, minRequests: 30}
  promote: {policy: noninferior, margin: 0.03}
  maxDuration: 2h
  prometheus: http://prometheus.monitoring:9090
  webhooks: [{name: slack, url: "https://hooks.example/x", events: [rollback]}]
""")
    spec = rollout.spec
    assert rollout.name == "faulty-canary" and spec.steps == (5, 20, 50, 80)
    assert (spec.interval, spec.max_duration, spec.min_outcomes) == (90.0, 7200.0, 200)
    assert spec.gates.latency.slack_ms == 10 and spec.gates.min_requests == 30 and spec.promote.margin == 0.03


@pytest.mark.parametrize("spec, expected", [
    ("{experiment: e, baseline: a, candidate: b}", "spec.steps: required field is missing"),
    ("{experiment: e, baseline: a, candidate: b, steps: [0, 50]}", "each step is a candidate weight in percent"),
    ("{experiment: e, baseline: a, candidate: b, steps: [10], interval: -5}", "spec.interval: Input should be "
                                                                               "greater than 0"),
    ("{experiment: e, baseline: a, candidate: b, steps: [10], minOutcome: 5}", "spec.minOutcome: unknown field"),
    ("{experiment: e, baseline: a, candidate: b, steps: [10], prometheus: localhost:9090}", "spec.prometheus"),
    ("{experiment: e, baseline: a, candidate: a, steps: [10]}", "spec: the candidate 'a' is also the baseline"),
])
def test_each_problem_is_a_line_naming_its_field(spec, expected):
    with pytest.raises(RolloutError) as caught:
        Rollout.from_yaml(f"apiVersion: market-ab.io/v1alpha1\nkind: Rollout\nmetadata: {{name: r}}\nspec: {spec}\n")
    assert expected in str(caught.value)


# the gates ----------------------------------------------------------------------------------------------------------

def test_the_error_gate_fails_a_candidate_that_fails_and_waits_for_requests():
    assert g.error_rate(SPEC, arm(500), arm(19, 10)).verdict == g.INCONCLUSIVE  # minRequests 20
    failing = g.error_rate(SPEC, arm(500), arm(100, 10))
    assert failing.verdict == g.FAIL and failing.figures["difference_ci"][0] > 0.01
    assert g.error_rate(SPEC, arm(500, 1), arm(100, 0)).verdict == g.PASS


def test_the_latency_gate_bounds_the_candidates_p99_from_below():
    rng = np.random.default_rng(1)
    slow = g.latency(SPEC, arm(500, rng=rng), arm(60, latency_ms=40.0, rng=rng))
    assert slow.verdict == g.FAIL and slow.figures["candidate_p99_lower_bound_ms"] > slow.figures["limit_ms"]
    assert g.latency(SPEC, arm(500, rng=rng), arm(60, rng=rng)).verdict == g.PASS
    # a handful of slow answers among many is within the p99's allowance
    mixed = arm(200, rng=rng)
    assert g.latency(SPEC, arm(500, rng=rng), mixed).verdict == g.PASS


def test_the_accuracy_gate_fails_a_worse_candidate_and_remembers_its_smallest_p():
    worse = g.accuracy(SPEC, arm(outcomes=2000, correct=1100), arm(outcomes=2000, correct=900), 1.0)
    assert worse.verdict == g.FAIL and worse.figures["difference"] == pytest.approx(-0.1)
    better = g.accuracy(SPEC, arm(outcomes=2000, correct=900), arm(outcomes=2000, correct=1100), 1.0)
    assert better.verdict == g.PASS and better.figures["always_valid_p"] == 1.0  # only looks that found it worse
    remembered = g.accuracy(SPEC, arm(outcomes=10, correct=5), arm(outcomes=10, correct=5), 0.01)
    assert remembered.verdict == g.FAIL and remembered.figures["always_valid_p"] == 0.01


def test_the_promote_policies():
    superior = SPEC
    noninferior = SPEC.model_copy(update={"promote": SPEC.promote.model_copy(update={"policy": "noninferior"})})
    equal = arm(outcomes=20000, correct=10600), arm(outcomes=20000, correct=10600)
    assert g.promotion(superior, *equal, 1.0).verdict == g.INCONCLUSIVE
    assert g.promotion(noninferior, *equal, 1.0).verdict == g.PASS  # 20,000 each rule out 2 points worse
    better = arm(outcomes=2000, correct=1000), arm(outcomes=2000, correct=1200)
    assert g.promotion(superior, *better, 1.0).verdict == g.PASS


# the decisions ------------------------------------------------------------------------------------------------------

def test_a_step_holds_until_its_outcomes_and_guardrails_then_advances():
    progress = c.Progress.begin(0.0)
    early = c.decide(SPEC, progress, arm(40), arm(5), 5.0)
    assert early.action == c.HOLD and early.candidate_weight == 10
    assert "0 of 50 candidate outcomes in this step" in early.reasons
    ready = c.decide(SPEC, progress, arm(500, outcomes=450, correct=240), arm(60, outcomes=55, correct=30), 60.0)
    assert ready.action == c.ADVANCE and ready.candidate_weight == 25
    assert (ready.progress.step, ready.progress.step_started, ready.progress.step_outcomes) == (1, 60.0, 55)
    again = c.decide(SPEC, ready.progress, arm(600, outcomes=500, correct=260), arm(80, outcomes=70, correct=40), 65.0)
    assert again.action == c.HOLD and "15 of 50 candidate outcomes in this step" in again.reasons


def test_a_failed_gate_rolls_back_at_once_whatever_the_step():
    progress = c.Progress(started=0.0, step_started=50.0, step=2, step_outcomes=100)
    decision = c.decide(SPEC, progress, arm(500), arm(100, 12), 55.0)
    assert decision.action == c.ROLL_BACK and decision.progress.phase == c.ROLLED_BACK
    assert decision.weights == {"baseline": 100, "candidate": 0}
    assert decision.reasons[0].startswith("error_rate: candidate fails")


def test_max_duration_keeps_the_baseline():
    decision = c.decide(SPEC, c.Progress.begin(0.0), arm(40), arm(5), SPEC.max_duration)
    assert decision.action == c.KEEP_BASELINE and decision.progress.phase == c.KEPT_BASELINE
    assert decision.candidate_weight == 0 and "maxDuration" in decision.reasons[0]


def test_the_last_step_promotes_by_the_policy():
    last = c.Progress(started=0.0, step_started=100.0, step=2, step_outcomes=0)
    baseline = arm(2000, outcomes=2000, correct=1000)
    decision = c.decide(SPEC, last, baseline, arm(2000, outcomes=2000, correct=1200), 200.0)
    assert decision.action == c.PROMOTE and decision.progress.phase == c.PROMOTED and decision.candidate_weight == 100
    waiting = c.decide(SPEC, last, baseline, arm(2000, outcomes=2000, correct=1010), 200.0)
    assert waiting.action == c.HOLD and waiting.candidate_weight == 50 and waiting.progress.phase == c.PROGRESSING


def test_simulated_rollouts_end_as_their_candidates_deserve():
    faulty = [simulate(SPEC, ArmModel(), ArmModel(failure_rate=0.1, added_ms=30.0), 10, seed) for seed in range(20)]
    assert {run.phase for run in faulty} == {c.ROLLED_BACK}
    better = [simulate(SPEC, ArmModel(), ArmModel(accuracy=0.63), 10, seed) for seed in range(20)]
    assert {run.phase for run in better} == {c.PROMOTED}
    for run in better:  # through every step in order, never skipping one
        weights = [d.candidate_weight for d in run.decisions]
        assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [10, 25, 50, 100]


def test_the_error_gate_counts_what_the_error_rate_alert_counts():
    import yaml

    from rollouts.figures import SERVER_FAILURE

    rules = yaml.safe_load((Path(__file__).resolve().parents[1] / "manifests/base/monitoring/prometheusrule.yaml")
                           .read_text())
    expr = next(rule["expr"] for group in rules["spec"]["groups"] for rule in group["rules"]
                if rule.get("alert") == "MarketAbErrorRate")
    assert f'code=~"{SERVER_FAILURE}"' in expr


def test_counters_since_the_start_survive_a_restart_of_their_process():
    from rollouts.figures import Counters

    start = Counters({("candidate", "requests"): 100.0, ("candidate", "le=0.01"): 90.0,
                      ("candidate", "le=inf"): 100.0})
    now = Counters({("candidate", "requests"): 130.0, ("candidate", "le=0.01"): 5.0, ("candidate", "le=inf"): 8.0})
    figures = now.since(start, "candidate")
    assert figures.requests == 30 and figures.latency == ((0.01, 5.0), (math.inf, 8.0))  # restarted: from zero
    assert Counters.from_dict(now.as_dict()) == now
