"""The drift evidence script end to end at a tiny size, and the stored evidence the docs render."""

import json
from pathlib import Path

from seldon_market_ab.analysis import drift_evidence, drift_report

REPO = Path(__file__).resolve().parents[2]


def test_evidence_script_runs_end_to_end(tmp_path):
    assert drift_evidence.main(["--null-windows", "10", "--stretches", "4", "--cost-repeats", "2",
                                "--episodes", "August 2015", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "drift-evidence.json").read_text())
    null = results["false_alarms"]
    assert null["ordinary"]["ensemble"]["n"] == 10 and set(null["ordinary"]["tests"]) == {"shift", "feed"}
    assert all(0 <= e["low"] <= e["share"] <= e["high"] + 1e-9 for e in null["ordinary"]["tests"].values())
    cells = results["power"]["cells"]
    assert {c["family"] for c in cells} == set(drift_evidence.SHIFTS)
    assert all(c["flagged"]["n"] == 4 for c in cells)
    assert {row["statistic"] for row in results["compared"]} and results["crisis"]["indices"].keys() == {
        "sp500", "nasdaq"}
    assert set(results["detection"]) == {"August 2015"}
    flags = results["detection"]["August 2015"]["sp500"]["series"]["flags"]
    assert len(flags) == drift_evidence.BEFORE + drift_evidence.AFTER and set(flags) <= {"0", "1"}
    assert results["timeline"]["months"] and results["cost"]["verdict_ms"] > 0
    markdown = (tmp_path / "drift-evidence.md").read_text()
    assert "**False alarms**" in markdown and "August 2015" in markdown and "| goal | measured | met |" in markdown
    for plot in ("drift-false-alarms.png", "drift-power.png", "drift-detection.png", "drift-timeline.png"):
        assert (tmp_path / plot).stat().st_size > 10_000, plot


def test_stored_evidence_is_from_a_full_run():
    """The docs render docs/drift-evidence.json (tests/e2e/test_readme.py); it must come from a full run of the
    shipped detector, at full size (at least 200 false-alarm windows, 50 per power cell, 20 cost repeats)."""
    results = json.loads((REPO / "docs" / "drift-evidence.json").read_text())
    assert results["false_alarms"]["ordinary"]["ensemble"]["n"] >= 200
    assert all(c["flagged"]["n"] >= 50 for c in results["power"]["cells"])
    assert set(results["detection"]) == set(drift_evidence.EPISODES)
    assert results["settings"]["tests"] == list(drift_evidence.SHIPPED.tests)
    assert results["cost"]["repeats"] >= 20
    assert [g["goal"] for g in drift_report.goals(results)]  # every goal renders from it
