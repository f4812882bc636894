"""A rollout in the demo's report (``analysis/rollout_report.py``): its audit log and the traffic's log made into the
decision, the exposure, the weight over time, and the split checked against the weights in force."""

from __future__ import annotations

import datetime

import numpy as np

from seldon_market_ab.analysis import rollout_report
from seldon_market_ab.analysis.report.rendering import MARKDOWN


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="milliseconds")


def gates(candidate_rate: float) -> list[dict]:
    return [{"name": "error_rate", "verdict": "pass", "reason": "",
             "figures": {"baseline_rate": 0.0, "candidate_rate": candidate_rate}},
            {"name": "latency", "verdict": "pass", "reason": "",
             "figures": {"candidate_p99_lower_bound_ms": 9.0, "limit_ms": 30.0}},
            {"name": "accuracy", "verdict": "inconclusive", "reason": "",
             "figures": {"baseline_accuracy": 0.5, "candidate_accuracy": float("nan"), "always_valid_p": 1.0}}]


T0 = 1_000_000.0
SPEC = {"baseline": "baseline", "candidate": "faulty", "steps": [20, 50, 80], "interval": 2.0}
AUDIT = [
    {"event": "start", "time": iso(T0), "spec": SPEC, "weights": {"baseline": 80, "faulty": 20}},
    {"event": "weights", "time": iso(T0 + 0.1), "weights": {"baseline": 80, "faulty": 20}},
    {"event": "decision", "time": iso(T0 + 2), "action": "hold", "step": 1, "candidate_requests": 10,
     "weights": {"baseline": 80, "faulty": 20}, "gates": gates(0.1), "reasons": []},
    {"event": "decision", "time": iso(T0 + 10), "action": "roll_back", "step": 1, "candidate_requests": 21,
     "weights": {"baseline": 100, "faulty": 0}, "gates": gates(0.2), "reasons": ["error_rate: fails"]},
    {"event": "weights", "time": iso(T0 + 10.1), "weights": {"baseline": 100, "faulty": 0}},
    {"event": "end", "time": iso(T0 + 12), "phase": "rolled_back", "reasons": ["error_rate: fails"],
     "candidate_requests": 21},
]


def requests(faulty_share_during: float, seed: int = 0) -> list[dict]:
    """100 requests before the rollout (baseline only), 100 while at 20%, 100 after the rollback."""
    rng = np.random.default_rng(seed)
    out = [{"time": T0 - 5 + 0.01 * i, "arm": "baseline"} for i in range(100)]
    out += [{"time": T0 + 0.2 + 0.09 * i, "arm": "faulty" if rng.random() < faulty_share_during else "baseline"}
            for i in range(100)]
    out += [{"time": T0 + 10.2 + 0.01 * i, "arm": "baseline"} for i in range(100)]
    return out


def test_the_summary_has_the_decision_the_exposure_and_the_weights_over_time():
    summary = rollout_report.summarise(AUDIT, requests(0.2), {"baseline": 100, "faulty": 0})
    assert (summary["phase"], summary["candidate_requests"], summary["reasons"]) == ("rolled_back", 21,
                                                                                    ["error_rate: fails"])
    assert [w for _, w in summary["weights"]] == [20, 0]
    assert [look["action"] for look in summary["looks"]] == ["hold", "roll_back"]
    assert not summary["srm"]["mismatch"]  # 20% while at 20, none before or after


def test_the_split_check_uses_the_weights_in_force_when_each_request_was_sent():
    assert rollout_report.summarise(AUDIT, requests(0.6), {"baseline": 100, "faulty": 0})["srm"]["mismatch"]
    late = requests(0.2) + [{"time": T0 + 11, "arm": "faulty"}]  # answered by the candidate after its rollback
    assert rollout_report.summarise(AUDIT, late, {"baseline": 100, "faulty": 0})["srm"]["p_value"] == 0.0


def test_the_report_section_and_the_plot(tmp_path):
    summary = rollout_report.summarise(AUDIT, requests(0.2), {"baseline": 100, "faulty": 0})
    text = MARKDOWN.get_template("rollout.j2").render(experiment={"rollout": summary}, marks="marks.md.j2")
    assert "**Rollout by `market-ab rollout`: rolled_back** after 21 requests to faulty" in text
    assert "| 10 | roll_back | 1 | 0% | 0.0% / 20.0% | 9.0 / 30.0 | 50.0% / - | 1 |" in text
    path = rollout_report.draw("faulty-rollout", summary, tmp_path / "faulty-rollout.png")
    assert path.stat().st_size > 10_000
