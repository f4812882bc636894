"""An experiment's analysis for the report: its counts, each arm's summary, the comparisons against the baseline
and their business impact, the off-policy estimates of a bandit, the recommendation, and the run's timeline and
regimes. The statistics themselves are ``ab_analysis``'s; this module applies them to a joined log.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..ab_analysis import BusinessModel, DecisionPolicy, business_impact, off_policy, recommend, summarise_arm
from .joining import ExperimentRun, arm_logs, read_log


def analyse(run: ExperimentRun, propensities: dict[str, float] | None = None,
            policy: DecisionPolicy = DecisionPolicy(), business: BusinessModel = BusinessModel()) -> dict:
    requests, feedback = read_log(run.log)
    logs = arm_logs(requests, propensities)
    baseline = logs.get(run.baseline)
    candidates = [log for name, log in logs.items() if name != run.baseline]
    summaries = {name: summarise_arm(log) for name, log in logs.items()}
    answered = [r for r in requests if "error" not in r]
    report = {
        "name": run.name, "kind": run.kind, "target": run.target, "baseline": run.baseline,
        "configured_split": run.weights,
        "counts": {"sent": len(requests), "answered": len(answered), "failed": len(requests) - len(answered),
                   "feedback_sent": len(feedback),
                   "feedback_applied": sum(1 for f in feedback.values() if f["status"] == "applied")},
        "arms": summaries,
    }
    if baseline is None or not candidates:
        report["recommendation"] = {"decision": "continue",
                                    "reasons": [f"the baseline {run.baseline} and a candidate must both be served; "
                                                f"arms seen: {', '.join(logs) or 'none'}"]}
        return report
    recommendation, figures = recommend(baseline, candidates, run.weights, policy)
    report["comparisons"] = figures["comparisons"]
    report["srm"] = figures["srm"]
    report["business_impact"] = {name: business_impact(summaries[run.baseline], summaries[name],
                                                       figures["comparisons"][name], business)
                                 for name in figures["comparisons"]}
    if propensities and all(not np.isnan(log.propensity).any() for log in logs.values()):
        report["off_policy"] = off_policy(list(logs.values()))
    report["recommendation"] = {"decision": recommendation.decision, "reasons": recommendation.reasons}
    report["timeline"] = timeline(requests)
    report["regimes"] = per_regime(requests)
    return report


def timeline(requests: list[dict], buckets: int = 20) -> dict:
    """Over the run, in ``buckets`` slices of arrival order: each arm's traffic share; each arm's accuracy so far as a
    Beta(1, 1) posterior (mean and 95% interval); and the cumulative (pseudo-)regret of the routing: for every request,
    the accuracy of the arm that proved best over the whole run less that of the arm that served it (both estimated
    from the whole run), summed. Day-to-day luck, which every arm shares, cancels out of it."""
    arms = sorted({r.get("arm") or "unknown" for r in requests})
    arm_of = np.array([r.get("arm") or "unknown" for r in requests])
    correct = np.array([bool(r.get("correct")) for r in requests], float)
    edges = np.linspace(0, len(requests), buckets + 1).astype(int)[1:]
    share = {arm: [] for arm in arms}
    posterior = {arm: [] for arm in arms}
    accuracy = {arm: float(correct[arm_of == arm].mean()) for arm in arms}
    best = max(accuracy.values(), default=0.0)
    regret = np.cumsum([best - accuracy[arm] for arm in arm_of])
    start = 0
    for end in edges:
        part = arm_of[start:end]
        for arm in arms:
            share[arm].append(float((part == arm).mean()) if len(part) else 0.0)
            k, n = correct[:end][arm_of[:end] == arm].sum(), (arm_of[:end] == arm).sum()
            low, high = stats.beta.ppf([0.025, 0.975], 1 + k, 1 + n - k)
            posterior[arm].append([float((1 + k) / (2 + n)), float(low), float(high)])
        start = end
    return {"buckets": buckets, "requests": edges.tolist(), "share": share, "posterior": posterior,
            "cumulative_regret": [float(regret[end - 1]) if end else 0.0 for end in edges],
            "regret_reference_accuracy": float(best)}


def per_regime(requests: list[dict]) -> dict:
    """Per market regime of the day: how many requests each arm served, and how often it was right."""
    out: dict = {}
    for r in requests:
        cell = out.setdefault(r.get("regime", "unknown"), {}).setdefault(r.get("arm") or "unknown",
                                                                          {"n": 0, "correct": 0})
        cell["n"] += 1
        cell["correct"] += int(bool(r.get("correct")))
    return {regime: {arm: {**c, "accuracy": c["correct"] / c["n"]} for arm, c in sorted(arms.items())}
            for regime, arms in sorted(out.items())}
