"""The LSTM runtime's load-time guards and settings, in process and in a real MLServer."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import torch
from mlserver.settings import ModelParameters, ModelSettings

from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.runtimes.lstm import LSTMRuntime

from ..conftest import MODELS


def lstm(folder, **extra) -> LSTMRuntime:
    return LSTMRuntime(ModelSettings(name=folder.name, implementation=LSTMRuntime,
                                     parameters=ModelParameters(uri=str(folder), extra=extra)))


def test_torch_threads_is_applied_at_load():
    before = torch.get_num_threads()
    try:
        for threads in ("2", 1):  # as Seldon passes it (a string), and as JSON
            asyncio.run(lstm(MODELS / "lightweight", torch_threads=threads).load())
            assert torch.get_num_threads() == int(threads)
    finally:
        torch.set_num_threads(before)


def tampered_copy(tmp_path, change) -> Path:
    folder = tmp_path / "models" / "lightweight"
    shutil.copytree(MODELS / "lightweight", folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    change(metadata["features"])
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@pytest.mark.parametrize(("change", "detail"), [
    (lambda f: f.reverse(), "same names, other order"),
    (lambda f: f.__setitem__(0, "ret_1_typo"), "missing ['ret_1'], unknown ['ret_1_typo']"),
    (lambda f: f.pop(), "missing ['obv_change_10']"),
], ids=["reordered", "renamed", "dropped"])
def test_an_artifact_with_other_features_is_refused(tmp_path, change, detail):
    folder = tampered_copy(tmp_path, change)
    with pytest.raises(ValueError) as error:
        LSTMArtifact.load(folder)
    assert "trained on other features than seldon_market_ab.features computes" in str(error.value)
    assert detail in str(error.value)


def test_mlserver_refuses_to_serve_an_artifact_with_other_features(tmp_path):
    folder = tampered_copy(tmp_path, lambda f: f.reverse())
    with pytest.raises(RuntimeError) as error:
        MLServerProcess(folder.parent, ready_timeout=120).start()
    assert "trained on other features" in str(error.value) and "training/serving skew" in str(error.value)
