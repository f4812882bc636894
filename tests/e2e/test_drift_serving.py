"""The drift detector's serving-cost benchmark runs end to end (tiny here: no timing is asserted; the figures are
read only from a full run). The docs render docs/drift-serving.json (tests/e2e/test_readme.py)."""

import json

from seldon_market_ab.loadtest import drift_serving

from ..conftest import MODELS, REPO


def test_the_drift_serving_benchmark_runs_end_to_end(tmp_path):
    assert drift_serving.main(["--rounds", "1", "--seconds", "1.5", "--models-dir", str(MODELS),
                               "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "drift-serving.json").read_text())
    (run,) = results["runs"]
    assert sorted(run) == ["closed loop", "open loop"]
    for clients, loads in run.items():
        assert sorted(loads["order"]) == sorted(["alone", *drift_serving.LOADS])
        for load in drift_serving.LOADS:
            assert loads[load]["errors"] == 0 and loads[load]["requests"] > 0
            assert loads[load]["windows_tested"] >= 1, load  # the detector really was fed during the load
            assert loads[load]["detector_errors"] == []
            ratio = results["ratios"][clients][load]["p99_ms"]
            assert ratio["low"] <= ratio["median"] <= ratio["high"]
    assert (tmp_path / "drift-serving.md").read_text().strip() == drift_serving.render_markdown(results)


def test_the_stored_drift_serving_run_is_a_full_run():
    results = json.loads((REPO / "docs" / "drift-serving.json").read_text())
    assert results["rounds"] >= 4 and results["seconds"] >= 8
    assert all(loads[load]["windows_tested"] >= 10 for run in results["runs"] for loads in run.values()
               for load in drift_serving.LOADS)
