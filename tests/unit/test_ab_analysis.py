"""The A/B analysis (analysis/ab_analysis.py) on simulated experiments whose truth is known, and its calibration
at a small size (the full run is docs/ab-calibration.json, rendered in the docs)."""

import json

import numpy as np
import pytest

from seldon_market_ab.analysis import ab_analysis, ab_calibration
from seldon_market_ab.analysis.ab_analysis import ArmLog, DecisionPolicy, recommend
from seldon_market_ab.analysis.ab_calibration import Scenario, simulate
from seldon_market_ab.training.evaluation import sharpe

from ..conftest import REPO


def test_aa_experiments_rarely_promote_even_when_looked_at_after_every_request():
    rates = ab_calibration.decision_rates(Scenario(2000), experiments=150, seed=11, policy=DecisionPolicy())
    assert rates["counts"]["promote"] <= 0.05 * 150  # the goal; naive peeking at p < 0.05 promotes far more often
    assert rates["counts"]["roll_back"] <= 0.05 * 150


def test_naive_peeking_would_not_be_calibrated():
    """The reason for the always-valid test: a fixed-horizon test read after every request promotes an A/A
    experiment much more often than its level."""
    from scipy import stats

    rng, promoted = np.random.default_rng(5), 0
    for _ in range(150):
        baseline, candidate = simulate(Scenario(2000), rng)
        t, is_b = np.r_[baseline.t, candidate.t], np.r_[np.zeros(baseline.n, bool), np.ones(candidate.n, bool)]
        correct = np.r_[baseline.correct, candidate.correct][np.argsort(t)].astype(float)
        is_b = is_b[np.argsort(t)]
        n_b, n_a = np.cumsum(is_b)[100:], np.cumsum(~is_b)[100:]
        p_b, p_a = np.cumsum(correct * is_b)[100:] / n_b, np.cumsum(correct * ~is_b)[100:] / n_a
        z = (p_b - p_a) / np.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
        promoted += bool((2 * stats.norm.sf(np.abs(z)) < 0.05).any() and z.max() > 0)
    assert promoted > 0.15 * 150


def test_a_real_gap_is_promoted_with_its_reasons():
    baseline, candidate = simulate(Scenario(4000, accuracy_gap=0.15), np.random.default_rng(2))
    decision, figures = recommend(baseline, [candidate], ab_calibration.WEIGHTS)
    assert decision.decision == "promote" and "candidate: accuracy +" in decision.reasons[0]
    low, high = figures["comparisons"]["candidate"]["accuracy_difference_ci"]
    assert low < 0.15 < high and figures["comparisons"]["candidate"]["probability_to_beat"] > 0.99


@pytest.mark.parametrize("fault, expected", [({"added_latency_ms": 30.0}, "latency guardrail"),
                                             ({"added_error_rate": 0.15}, "error guardrail")])
def test_a_faulty_candidate_is_rolled_back(fault, expected):
    baseline, candidate = simulate(Scenario(600, **fault), np.random.default_rng(3))
    decision, _ = recommend(baseline, [candidate], ab_calibration.WEIGHTS)
    assert decision.decision == "roll_back" and expected in decision.reasons[0]


def test_an_unfair_split_is_a_sample_ratio_mismatch():
    baseline, candidate = simulate(Scenario(2000), np.random.default_rng(4))  # a 70/30 split
    _, fair = recommend(baseline, [candidate], {"baseline": 70, "candidate": 30})
    unfair, figures = recommend(baseline, [candidate], {"baseline": 50, "candidate": 50})
    assert not fair["srm"]["mismatch"] and fair["srm"]["p_value"] > 0.001
    assert unfair.decision == "keep_baseline" and "sample ratio mismatch" in unfair.reasons[0]
    assert figures["srm"]["p_value"] < 1e-6


def test_planned_sample_spent_without_a_difference_keeps_the_baseline():
    baseline, candidate = simulate(Scenario(1000), np.random.default_rng(6))
    decision, _ = recommend(baseline, [candidate], None, DecisionPolicy(max_samples=200))
    assert decision.decision == "keep_baseline" and "without evidence" in decision.reasons[0]


def test_summaries_agree_with_the_evaluation_helpers():
    baseline, _ = simulate(Scenario(3000), np.random.default_rng(7))
    summary = ab_analysis.summarise_arm(baseline)
    assert summary["sharpe"] == pytest.approx(sharpe(baseline.returns))
    low, high = summary["sharpe_ci"]
    assert low < summary["sharpe"] < high
    served = ~baseline.error
    assert summary["accuracy"] == pytest.approx(baseline.correct[served].mean())
    assert summary["latency_ms"]["p50"] == pytest.approx(np.median(baseline.latency_ms[served]))


def test_off_policy_estimates_recover_each_arms_value_from_a_logging_policy():
    rng = np.random.default_rng(8)
    n, value = 6000, {"a": 0.60, "b": 0.45}
    propensity_a = rng.uniform(0.2, 0.8, n)  # a logging policy that changes its mind, as a bandit does
    chose_a = rng.random(n) < propensity_a
    reward = np.where(chose_a, rng.random(n) < value["a"], rng.random(n) < value["b"])
    t = np.arange(n)
    logs = [ArmLog("a", t[chose_a], reward[chose_a], np.zeros(chose_a.sum()), np.zeros(chose_a.sum()),
                   np.zeros(chose_a.sum(), bool), propensity_a[chose_a]),
            ArmLog("b", t[~chose_a], reward[~chose_a], np.zeros((~chose_a).sum()), np.zeros((~chose_a).sum()),
                   np.zeros((~chose_a).sum(), bool), 1 - propensity_a[~chose_a])]
    estimates = ab_analysis.off_policy(logs)
    for arm, truth in value.items():
        for method in ("ips", "dr"):
            low, high = estimates[arm][method]["ci"]
            assert low < truth < high, (arm, method, estimates[arm][method])
        assert estimates[arm]["snips"] == pytest.approx(truth, abs=0.03)
        assert estimates[arm]["identifiable"] and estimates[arm]["support"] == 1.0


def test_an_arm_a_deterministic_router_never_gave_a_chance_is_not_identifiable():
    """A router that sends each regime to one arm with certainty: "always choose b" on the days it chose a with
    propensity 1 has no data, so there is no IPS or SNIPS estimate, only a DR that rests on its reward model there."""
    t = np.arange(10)
    certain_a = ArmLog("a", t[:6], np.ones(6, bool), np.zeros(6), np.zeros(6), np.zeros(6, bool), np.ones(6))
    sometimes_b = ArmLog("b", t[6:], np.zeros(4, bool), np.zeros(4), np.zeros(4), np.zeros(4, bool), np.full(4, 0.5))
    estimates = ab_analysis.off_policy([certain_a, sometimes_b])
    assert estimates["a"]["identifiable"] and estimates["a"]["support"] == 1.0  # b's days gave a half a chance
    assert not estimates["b"]["identifiable"] and estimates["b"]["support"] == pytest.approx(0.4)
    assert estimates["b"]["ips"] is None and estimates["b"]["snips"] is None
    assert estimates["b"]["dr_model_share"] == pytest.approx(0.6) and estimates["b"]["dr"]["value"] is not None


def test_business_impact_follows_the_return_difference_and_charges_latency():
    baseline = ab_analysis.summarise_arm(ArmLog.of("a", correct=[1, 0], returns=[0.01, -0.01], latency_ms=[5, 5]))
    candidate = ab_analysis.summarise_arm(ArmLog.of("b", correct=[1, 0], returns=[0.01, -0.01], latency_ms=[15, 15]))
    difference = {"return_difference": 0.001, "return_difference_ci": [0.0, 0.002]}
    model = ab_analysis.BusinessModel(notional=10_000, cost_per_ms=0.5, trades=100)
    impact = ab_analysis.business_impact(baseline, candidate, difference, model)
    assert impact["total"] == pytest.approx(100 * (10_000 * 0.001 - 0.5 * 10))
    assert impact["total_ci"][0] < impact["total"] < impact["total_ci"][1]


def test_the_calibration_runs_end_to_end(tmp_path):
    assert ab_calibration.main(["--experiments", "20", "--sizes", "300", "--gaps", "0", "0.2", "--latencies", "20",
                                "--errors", "0.1", "--demo-requests", "300", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "ab-calibration.json").read_text())
    assert results["aa"][0]["experiments"] == 20 and sum(results["aa"][0]["counts"].values()) == 20
    assert (tmp_path / "ab-calibration.md").read_text().strip() == ab_calibration.render_markdown(results)
    assert (tmp_path / "ab-calibration.png").stat().st_size > 10_000


def test_the_stored_calibration_is_a_full_run_that_meets_the_goal():
    results = json.loads((REPO / "docs" / "ab-calibration.json").read_text())
    assert results["experiments"] >= 200
    assert all(entry["promote"]["rate"] <= 0.05 for entry in results["aa"])
