"""Settings from parameters.extra: strings convert, and a wrong key or value fails the load, naming it."""

import json

import pytest

from seldon_market_ab.regimes import RegimeThresholds
from seldon_market_ab.routers.outcomes import OutcomesSettings
from seldon_market_ab.routers.settings import STATE_DIR_ENV, RegimeRouterSettings, RouterSettings, default_state_dir
from seldon_market_ab.runtimes.lstm import LSTMSettings
from seldon_market_ab.settings import SettingsError

from ..conftest import MODELS


def test_strings_from_seldon_convert():
    """Seldon writes a Model's spec.parameters into extra as strings."""
    config = RouterSettings.from_extra({"arms": "a, b,c", "discount": "0.99", "warmup_rewards": "5",
                                        "min_share": "0.1", "decision_ttl_seconds": "60", "seed": "7"})
    assert config.arms == ("a", "b", "c") and config.discount == 0.99 and config.warmup_rewards == 5
    assert RouterSettings.from_extra({"arms": '["x", "y"]'}).arms == ("x", "y")
    assert RouterSettings.from_extra({"arms": ["x", "y"]}).arms == ("x", "y")
    assert LSTMSettings.from_extra({"torch_threads": "2", "batch_windows": "8", "batch_wait_seconds": "0.002"}) == \
        LSTMSettings(torch_threads=2, batch_windows=8, batch_wait_seconds=0.002)


def test_the_shipped_settings_validate():
    for name, cls in (("thompson-router", RouterSettings), ("regime-router", RegimeRouterSettings),
                      ("baseline", LSTMSettings), ("outcomes", OutcomesSettings)):
        extra = json.loads((MODELS / name / "model-settings.json").read_text())["parameters"]["extra"]
        cls.from_extra(extra, name)


@pytest.mark.parametrize(("cls", "extra", "expected"), [
    (RouterSettings, {"discont": "0.9"},
     "unknown key 'discont' = '0.9' (did you mean 'discount'?); allowed keys: store, state_dir, arms"),
    (RouterSettings, {"discount": "1.5"}, "'discount' = '1.5': Input should be less than or equal to 1 "
                                          "(allowed: a number in (0, 1])"),
    (RouterSettings, {"reward": "poisson"}, "'reward' = 'poisson': Input should be 'bernoulli' or 'gaussian'"),
    (RouterSettings, {"warmup_rewards": "ten"}, "'warmup_rewards' = 'ten': Input should be a valid integer"),
    (RouterSettings, {"default_arm": "robust"}, "'default_arm' 'robust' is not one of the arms"),
    (RouterSettings, {"arms": "a,a"}, "'arms' must be distinct"),
    (RouterSettings, {"arms": ""}, "'arms' = '': Tuple should have at least 1 item"),
    (RouterSettings, {"min_share": "0.5"}, "'min_share' 0.5 times 3 arms exceeds 1"),
    (RouterSettings, {"store": "postgres://db"}, "'store' 'postgres://db' must start with one of sqlite:///"),
    (RouterSettings, {"mode": "learned"}, "unknown key 'mode'"),  # a regime-router key on the Thompson router
    (RegimeRouterSettings, {"route_bull": "nope", "arms": "baseline,robust"}, "routes name arms"),
    (RegimeRouterSettings, {"regime_bull_trend": "-0.1"}, "'regime_bear_trend' must be below 'regime_bull_trend'"),
    (RegimeRouterSettings, {"route_sidways": "baseline"}, "did you mean 'route_sideways'?"),
    (OutcomesSettings, {"arms": "a,a"}, "'arms' must be distinct"),
    (OutcomesSettings, {"arms": ""}, "'arms' = '': Tuple should have at least 1 item"),
    (OutcomesSettings, {"store": "mysql://db"}, "'store' 'mysql://db' must start with one of sqlite:///"),
    (OutcomesSettings, {"ttl_seconds": "0"}, "'ttl_seconds' = '0': Input should be greater than 0"),
    (LSTMSettings, {"torch_threads": "0"}, "'torch_threads' = '0': Input should be greater than or equal to 1"),
    (LSTMSettings, {"batch_windows": "many"}, "'batch_windows' = 'many'"),
    (LSTMSettings, {"max_batch_size": "8"}, "unknown key 'max_batch_size'"),  # MLServer's batching: not ours
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_bad_settings_are_named(cls, extra, expected):
    with pytest.raises(SettingsError) as error:
        cls.from_extra(extra, "some-model")
    assert str(error.value).startswith("some-model: invalid parameters.extra: ")
    assert expected in str(error.value)


def test_regime_router_arms_default_to_its_routes():
    config = RegimeRouterSettings.from_extra({"route_bull": "enhanced"})
    assert config.arms == ("robust", "enhanced", "conservative", "baseline")
    assert config.routes == {"high_volatility": "robust", "bull": "enhanced", "bear": "conservative",
                             "sideways": "baseline"}
    assert RegimeRouterSettings.from_extra({}).thresholds == RegimeThresholds()
    assert RegimeRouterSettings.from_extra({"regime_vix": "30"}).thresholds.vix == 30.0


def test_state_directory_and_store(monkeypatch, tmp_path):
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "from-env"))
    assert default_state_dir() == tmp_path / "from-env"
    config = RouterSettings.from_extra({})
    assert config.state_path() == tmp_path / "from-env" and config.store_url("r1") == "sqlite:///r1.db"
    assert RouterSettings.from_extra({"state_dir": "/srv/state"}).state_path().as_posix() == "/srv/state"
    monkeypatch.delenv(STATE_DIR_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "seldon-market-ab"
