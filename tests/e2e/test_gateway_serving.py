"""The gateway's serving-cost benchmark runs end to end (tiny here: no timing is asserted; the figures are read only
from a full run). The docs render docs/gateway-serving.json (tests/e2e/test_readme.py)."""

import json

from seldon_market_ab.loadtest import gateway_serving

from ..conftest import MODELS, REPO


def test_the_gateway_serving_benchmark_runs_end_to_end(tmp_path):
    assert gateway_serving.main(["--rounds", "1", "--seconds", "1", "--clients", "4", "--models-dir", str(MODELS),
                                 "--manifests", str(REPO / "manifests/overlays/dev"), "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gateway-serving.json").read_text())
    (run,) = results["runs"]
    assert sorted(run["order"]) == sorted(gateway_serving.LOADS)
    for load in gateway_serving.LOADS:
        assert run[load]["errors"] == 0 and run[load]["requests"] > 0, load
        assert run[load]["cpu_ms_per_request"]["mlserver"] > 0, load
    assert run["direct"]["cpu_ms_per_request"]["gateway"] < run["mab"]["cpu_ms_per_request"]["gateway"]
    assert set(results["ratios"]) == set(gateway_serving.RATIOS)
    assert (tmp_path / "gateway-serving.md").read_text().strip() == gateway_serving.render_markdown(results)


def test_the_stored_gateway_serving_run_is_a_full_run():
    results = json.loads((REPO / "docs" / "gateway-serving.json").read_text())
    assert results["rounds"] >= 3 and results["seconds"] >= 6 and results["clients"] == 8
    assert all(run[load]["errors"] == 0 for run in results["runs"] for load in gateway_serving.LOADS)
