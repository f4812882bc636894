"""The drift evidence script end to end at a tiny size, and the stored evidence the docs render."""

import json
from pathlib import Path

from analysis import drift_evidence

REPO = Path(__file__).resolve().parents[1]


def test_evidence_script_runs_end_to_end(tmp_path):
    assert drift_evidence.main(["--null-windows", "10", "--cost-repeats", "2", "--power-windows", "4",
                                "--consecutive-stride", "120", "--episodes", "August 2015",
                                "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "drift-evidence.json").read_text())
    null = results["false_alarms"]
    assert null["windows"] == 10 and set(null["series"]) <= set(null["iid"])
    assert all(0 <= entry["low"] <= entry["share"] <= entry["high"] + 1e-9 for entry in null["iid"].values())
    assert set(results["detection"]) == {"August 2015"}
    flags = results["detection"]["August 2015"]["sp500"]["series"]["flags"]
    assert len(flags) == drift_evidence.BEFORE + drift_evidence.AFTER and set(flags) <= {"0", "1"}
    assert results["timeline"]["months"] and set(results["cost"]["median_seconds"]) == set(null["iid"])
    markdown = (tmp_path / "drift-evidence.md").read_text()
    assert "**False alarms**" in markdown and "August 2015" in markdown
    for plot in ("drift-false-alarms.png", "drift-detection.png", "drift-timeline.png"):
        assert (tmp_path / plot).stat().st_size > 10_000, plot


def test_stored_evidence_is_from_a_full_run():
    """The docs render docs/drift-evidence.json (tests/test_readme.py); it must come from a full run."""
    results = json.loads((REPO / "docs" / "drift-evidence.json").read_text())
    assert results["false_alarms"]["windows"] >= 200
    assert set(results["detection"]) == set(drift_evidence.EPISODES)
    assert results["consecutive"]["stride"] == results["reference"]["calibration_stride"]
    assert results["cost"]["repeats"] >= 20
    assert all(entry["power"]["n"] >= 100 for entry in results["mmd_power"]["permutations"].values())
