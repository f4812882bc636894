"""A wrong settings key or value stops a real MLServer at start-up, and its log names it."""

import json

import pytest

from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess

from ..conftest import add_router, copy_repository


def test_a_misspelt_key_fails_the_load_in_mlserver(tmp_path):
    """MLServer stops at start-up when a model fails to load; the log names the key."""
    add_router(tmp_path, "thompson-router", "thompson-router", warmup_reward="20")
    with pytest.raises(RuntimeError) as error:
        MLServerProcess(tmp_path, ready_timeout=120).start()
    assert "unknown key 'warmup_reward' = '20' (did you mean 'warmup_rewards'?)" in str(error.value)


def test_a_bad_lstm_setting_fails_the_load_in_mlserver(tmp_path):
    repository = copy_repository(tmp_path, ["lightweight"])
    path = repository / "lightweight" / "model-settings.json"
    settings = json.loads(path.read_text())
    settings["parameters"]["extra"]["torch_threads"] = "-1"
    path.write_text(json.dumps(settings))
    with pytest.raises(RuntimeError) as error:
        MLServerProcess(repository, ready_timeout=120).start()
    assert "lightweight: invalid parameters.extra: 'torch_threads' = '-1'" in str(error.value)
