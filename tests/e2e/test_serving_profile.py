"""The serving profile (loadtest/serving_profile.py): how samples are put in parts, and a tiny run end to end with
py-spy attached to a real MLServer. The docs' table is rendered from docs/serving-profile.json
(tests/e2e/test_readme.py)."""

import json

import pytest

from seldon_market_ab.loadtest import serving_profile
from seldon_market_ab.loadtest.serving_profile import OTHER, part_of

from ..conftest import MODELS, REPO

MAIN = ("thread (1): MainThread;<module> (mlserver:6);main (mlserver/cli/main.py:269);"
        "Runner.run (asyncio/runners.py:118)")


@pytest.mark.parametrize("stack, part", [
    (MAIN, "event loop and gRPC (asyncio, grpc's Python code)"),  # MLServer's CLI at the root is not its request path
    (MAIN + ";DataPlane.infer (mlserver/handlers/dataplane.py:112);LSTMRuntime.predict (runtimes/lstm.py:105);"
     "ForwardBatcher._run (runtimes/batching.py:70);LSTMArtifact.predict_features (runtimes/artifact.py:75);"
     "Module._call_impl (torch/nn/modules/module.py:1789)", "forward pass (TorchScript)"),
    (MAIN + ";DataPlane.infer (mlserver/handlers/dataplane.py:112);LSTMRuntime._respond (runtimes/lstm.py:140);"
     "Histogram.observe (prometheus_client/metrics.py:685)", "metrics (prometheus_client)"),
    (MAIN + ";DataPlane.infer (mlserver/handlers/dataplane.py:112);LSTMRuntime._respond (runtimes/lstm.py:140)",
     "LSTM runtime, other"),
    (MAIN + ";InferenceServicer.ModelInfer (mlserver/grpc/servicers.py:75)",
     "MLServer's request path (servicer, data plane, interceptors, pydantic)"),
    ("thread (2): thompson-router-store-writer;Thread.run (threading.py:982);StoreWriter._run (routers/stores/"
     "writer.py:87);StoreWriter._commit (routers/stores/writer.py:97);SQLiteStore._transaction "
     "(routers/stores/sqlite_store.py:118)", "store writer: commit (fsync)"),
    ("thread (3): Thread-1 (_poll_wrapper);Thread.run (threading.py:982)", "gRPC's poller thread (native code)"),
    ("thread (4): Thread-2;Thread.run (threading.py:982)", OTHER),
])
def test_each_sample_goes_to_the_most_specific_part(stack, part):
    assert part_of(stack) == part


def test_the_profile_runs_end_to_end(tmp_path):
    """py-spy attaches to a real MLServer under each load (it needs ptrace rights, which CI has as root)."""
    assert serving_profile.main(["--seconds", "1", "--rate", "100", "--models-dir", str(MODELS),
                                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "serving-profile.json").read_text())
    assert list(results["loads"]) == serving_profile.LOADS
    for load in results["loads"].values():
        assert load["requests"] > 0 and load["samples"] > 0
        assert sum(part["share"] for part in load["parts"].values()) == pytest.approx(1.0)
    lstm = results["loads"]["lstm_raw"]["parts"]
    assert "forward pass (TorchScript)" in lstm and "forward pass (TorchScript)" not in results["loads"]["echo_window"][
        "parts"]
    assert "store writer: commit (fsync)" in results["loads"]["feedback"]["parts"]
    assert (tmp_path / "serving-profile.md").read_text().strip() == serving_profile.render_markdown(results)


def test_the_stored_profile_is_a_full_run():
    results = json.loads((REPO / "docs" / "serving-profile.json").read_text())
    assert results["seconds"] >= 5 and all(load["samples"] >= 1000 for load in results["loads"].values())
