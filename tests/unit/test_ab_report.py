"""The report of a run (analysis/ab_report.py): logs joined and analysed, and the stored sample in docs/."""

import inspect
import json

from seldon_market_ab.analysis.ab_report import ExperimentRun, analyse
from seldon_market_ab.cli.demo import run_demo

from ..conftest import REPO

SAMPLE = REPO / "docs" / "demo-report"


def test_a_log_is_joined_and_counted(tmp_path):
    log = tmp_path / "log.jsonl"
    entries = []
    for t in range(200):
        arm = "baseline" if t % 2 else "candidate"
        failed = arm == "candidate" and t % 10 == 0
        entry = {"kind": "request", "t": t, "request_id": f"r{t}", "arm": arm, "latency_ms": 5.0 + (t % 7),
                 "regime": "bull" if t % 3 else "bear", "strategy_return": 0.001 * ((t % 5) - 2)}
        entries.append({**entry, "error": "INTERNAL: injected"} if failed else {**entry, "correct": t % 4 != 0})
        if not failed:
            entries.append({"kind": "feedback", "request_id": f"r{t}", "reward": 1.0, "status": "applied"})
    log.write_text("\n".join(json.dumps(e) for e in entries))
    report = analyse(ExperimentRun("x", "ab", "x.experiment", "baseline", {"baseline": 1, "candidate": 1}, log))
    assert report["counts"] == {"sent": 200, "answered": 180, "failed": 20, "feedback_sent": 180,
                                "feedback_applied": 180}
    assert report["arms"]["candidate"]["n"] == 100 and report["arms"]["candidate"]["error_rate"] == 0.2
    assert sum(c["n"] for cells in report["regimes"].values() for c in cells.values()) == 200
    assert report["recommendation"]["decision"] == "roll_back"  # 20% failures against none


def test_the_stored_sample_is_a_run_of_the_defaults_with_every_plot():
    report = json.loads((SAMPLE / "report.json").read_text())
    defaults = inspect.signature(run_demo).parameters
    assert report["scenarios"] == defaults["scenarios"].default and report["workers"] == defaults["workers"].default
    assert [e["kind"] for e in report["experiments"]] == ["aa", "ab", "ab", "ab", "rollout", "faulty", "rollout",
                                                          "rollout"]
    for experiment in report["experiments"]:
        assert experiment["counts"]["sent"] == 2 * report["scenarios"]
    html = (SAMPLE / "report.html").read_text()
    for png in ("traffic-share", "accuracy", "latency", "posterior-regret", "regimes", "drift", "business-impact",
                "dashboard", "faulty-rollout", "enhanced-rollout", "retrain-rollout", "retrain-rollout-timeline"):
        assert (SAMPLE / f"{png}.png").stat().st_size > 10_000 and f'src="{png}.png"' in html
    # the live numbers: each arm's outcomes agree across the log, the store and Prometheus; the faulty alerts fired
    assert all(e["live"]["store_equals_log"] and e["live"]["prometheus_equals_store"] for e in report["experiments"])
    fired = {(a["alertname"], a["labels"].get("model")) for a in report["prometheus"]["alerts"]}
    assert {("MarketAbErrorRate", "faulty"), ("MarketAbLatencyHigh", "faulty")} <= fired
    # a drift alert became a new version, and its rollout decided
    retraining = report["experiments"][4]["retraining"]
    assert retraining["version"] == 2 and retraining["result"] in ("promoted", "kept_baseline", "rolled_back")
    # the autopilot rolled the faulty candidate back, its exposure counted
    rollout = report["experiments"][-2]["rollout"]
    assert rollout["phase"] == "rolled_back" and rollout["candidate_requests"] == \
        report["experiments"][-2]["arms"]["faulty"]["n"]
