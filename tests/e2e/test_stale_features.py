"""How large a stale-features fault is, and the traffic to catch it (analysis/stale_features.py)."""

import json

from seldon_market_ab.analysis import stale_features

from ..conftest import MODELS, REPO


def test_the_measurement_runs_and_says_what_it_found(tmp_path):
    assert stale_features.main(["--models-dir", str(MODELS), "--experiments", "10", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "stale-features.json").read_text())
    gap = results["gap"]
    assert abs(gap["gap"] - (gap["stale_accuracy"] - gap["fresh_accuracy"])) < 1e-9  # paired: the same days
    assert gap["gap_ci"][0] <= gap["gap"] <= gap["gap_ci"][1] and 0 < gap["disagreement"] < 1
    assert {int(size) for size in results["catch"]["rates"]} <= set(stale_features.SIZES)
    assert stale_features.render_markdown(results).startswith("Features one day stale")


def test_the_stored_measurement_is_a_full_run():
    results = json.loads((REPO / "docs" / "stale-features.json").read_text())
    assert results["experiments"] >= 200 and results["gap"]["n"] > 3000
