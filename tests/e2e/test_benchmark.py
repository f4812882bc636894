"""The serving benchmark runs end to end (tiny and fast here: its figures are only read from a full run, and no
test asserts a timing). The docs' table is rendered from docs/benchmarks.json (tests/e2e/test_readme.py)."""

import json

from seldon_market_ab.loadtest import benchmark

from ..conftest import MODELS, REPO


def test_the_benchmark_runs_end_to_end(tmp_path):
    assert benchmark.main(["--rounds", "1", "--seconds", "0.3", "--workers", "1", "--models-dir", str(MODELS),
                           "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [row["name"] for row in results["rows"]] == [row[0] for row in benchmark.ROWS]
    for row in results["rows"]:
        assert row["ratio"]["min"] <= row["ratio"]["median"] <= row["ratio"]["max"]
        assert row["numerator_per_second"] > 0 and row["denominator_per_second"] > 0
    drill = results["crash_drill"]
    assert drill["acknowledged"] > 0 and 0 <= drill["lost"] <= drill["acknowledged"]
    assert drill["feedback_for_kept"] == ["applied"]
    assert drill["feedback_for_lost"] in ([], ["unknown"])  # a lost decision is reported, never applied
    assert (tmp_path / "benchmarks.md").read_text().strip() == benchmark.render_markdown(results)


def test_the_stored_benchmark_is_a_full_run():
    results = json.loads((REPO / "docs" / "benchmarks.json").read_text())
    assert results["rounds"] >= 3 and results["seconds"] >= 2
