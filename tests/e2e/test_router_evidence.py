"""The router evidence script end to end at a tiny size, and the stored evidence the docs render."""

import json

from seldon_market_ab.analysis import router_evidence

from ..conftest import REPO


def test_evidence_script_runs_end_to_end(tmp_path):
    assert router_evidence.main(["--seeds", "2", "--horizon", "300", "--replay-seeds", "1",
                                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "router-evidence.json").read_text())
    assert set(results) == {"simulation", "replay", "regimes"}
    assert results["replay"]["n"] > 3000 and len(results["regimes"]["by_regime"]) == 4
    assert (tmp_path / "router-simulation.png").stat().st_size > 10_000
    assert (tmp_path / "router-replay.png").stat().st_size > 10_000


def test_stored_evidence_is_from_a_full_run():
    """The docs render docs/router-evidence.json (tests/e2e/test_readme.py); it must come from a full run."""
    results = router_evidence.load_results(REPO / "docs" / "router-evidence.json")
    assert results["simulation"]["seeds"] >= 20 and results["simulation"]["horizon"] >= 5000
    assert results["replay"]["n"] > 3000
