"""Both routers in a real MLServer: decisions, delayed feedback, health, regimes, over REST and gRPC."""

import json

import grpc
import numpy as np
import pytest

from seldon_market_ab.client import InferenceClient, RestError
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.regimes import REGIMES, regime_series
from seldon_market_ab.routers.bandit import ArmStats, state_from_dict
from seldon_market_ab.routers.settings import RouterSettings
from seldon_market_ab.routers.stores.sqlite_store import SQLiteStore
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MIN_WINDOW, add_router

ARMS = ("baseline", "enhanced", "lightweight")
STRINGS = object  # numpy dtype that our client sends as BYTES


@pytest.fixture(scope="module")
def routers(tmp_path_factory):
    repository = tmp_path_factory.mktemp("routers")
    add_router(repository, "thompson-router", "thompson-router")
    add_router(repository, "regime-router", "regime-router")
    add_router(repository, "regime-learned", "regime-router", mode="learned")
    add_router(repository, "thompson-health", "thompson-router", max_consecutive_errors=2, min_share=0.0)
    add_router(repository, "thompson-short-ttl", "thompson-router", decision_ttl_seconds=1e-6)
    add_router(repository, "thompson-gaussian", "thompson-router", reward="gaussian", prior_std="0.01",
               discount="0.9", warmup_rewards="0")
    add_router(repository, "regime-fallback", "regime-router")
    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address, server.http_url)
        yield repository, server, client
        client.close()


@pytest.fixture(scope="module")
def window():
    return ohlcv_windows("sp500", [4500], MIN_WINDOW)


def ids(*values):
    return np.array(values, dtype=STRINGS)


def stored_state(server, router, context="all"):
    """The posterior the router committed, read from its SQLite file in the server's state directory."""
    store = SQLiteStore(server.state_dir / f"{router}.db", router)
    try:
        return state_from_dict(store.load_states().get(context, {}))
    finally:
        store.close()


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_decision_carries_the_input_in_a_tensor_named_after_the_arm(routers, window, protocol):
    _, _, client = routers
    infer = client.infer_grpc if protocol == "grpc" else client.infer_rest
    answer = infer("thompson-router", {"ohlcv": window}, request_id=f"carry-{protocol}")
    (arm,) = answer["arm"]
    assert arm in ARMS and set(answer) == {arm, "arm", "propensity", "decision_id"}
    np.testing.assert_array_equal(answer[arm], window)
    assert answer[arm].dtype == np.float32
    assert answer["decision_id"] == [f"carry-{protocol}"]
    assert 0 < answer["propensity"][0] <= 1 and answer["propensity"].dtype == np.float64


def test_decision_id_falls_back_to_the_x_request_id_header(routers, window):
    _, _, client = routers
    answer = client.infer_grpc("thompson-router", {"ohlcv": window}, metadata=(("x-request-id", "from-seldon"),))
    assert answer["decision_id"] == ["from-seldon"]
    generated = client.infer_grpc("thompson-router", {"ohlcv": window})["decision_id"][0]
    assert len(generated) == 36 and generated != "from-seldon"


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_feedback_updates_the_posterior_once(routers, window, protocol):
    _, server, client = routers
    infer = client.infer_grpc if protocol == "grpc" else client.infer_rest
    decision_id = f"fb-{protocol}"
    (arm,) = infer("thompson-router", {"ohlcv": window}, request_id=decision_id)["arm"]
    before = stored_state(server, "thompson-router").get(arm, ArmStats())
    feedback = {"decision_id": ids(decision_id, decision_id, "never-made"), "reward": np.array([1.0, 1.0, 1.0])}
    assert infer("thompson-router", feedback)["status"] == ["applied", "duplicate", "unknown"]
    assert infer("thompson-router", {"decision_id": ids(decision_id), "reward": np.array([0.0])})["status"] == \
        ["conflict"]
    after = stored_state(server, "thompson-router")[arm]
    assert (after.rewards - before.rewards, after.total - before.total) == (1, 1.0)


def test_a_retried_request_gets_its_first_decision(routers, window):
    _, server, client = routers
    first = client.infer_grpc("thompson-router", {"ohlcv": window}, request_id="retry-1")
    retries = [client.infer_rest("thompson-router", {"ohlcv": window}, request_id="retry-1") for _ in range(12)]
    assert {r["arm"][0] for r in retries} == {first["arm"][0]}
    assert {r["propensity"][0] for r in retries} == {first["propensity"][0]}


def test_rest_requests_without_an_id_get_one_from_mlserver(routers, window):
    """Over REST, MLServer gives a request without an id a UUID before the router runs, so the
    x-request-id fallback only applies over gRPC (where the id field is empty); see the README."""
    _, _, client = routers
    answer = client.infer_rest("thompson-router", {"ohlcv": window})
    assert len(answer["decision_id"][0]) == 36


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize(("case", "inputs", "expected"), [
    ("NaN reward", {"decision_id": ids("x"), "reward": np.array([np.nan])}, "NaN or Inf"),
    ("reward out of range", {"decision_id": ids("x"), "reward": np.array([2.0])}, "must be in [0, 1]"),
    ("missing id", {"reward": np.array([1.0])}, "'decision_id' BYTES [n] is missing"),
    ("empty id", {"decision_id": ids(""), "reward": np.array([1.0])}, "no empty string"),
    ("id as numbers", {"decision_id": np.array([1.0]), "reward": np.array([1.0])}, "must be BYTES, got FP64"),
    ("reward as int", {"decision_id": ids("x"), "reward": np.array([1], np.int32)}, "must be FP64 or FP32"),
    ("count mismatch", {"decision_id": ids("x", "y"), "reward": np.array([1.0])}, "expected 2"),
    ("unknown arm", {"arm": ids("nope"), "healthy": np.array([1], np.int32)}, "unknown arms ['nope']"),
    ("short window", {"ohlcv": np.ones((1, 60, 5), np.float32)},
     f"windows have 60 rows; at least {MIN_WINDOW} are needed"),
    ("negative price", {"ohlcv": -np.ones((1, MIN_WINDOW, 5), np.float32)}, "must be > 0"),
    ("ids shape", {"decision_id": ids("x", "y"), "reward": np.array([[1.0, 1.0]])}, "must have shape [2] or [2, 1]"),
    ("no ohlcv", {"prices": np.ones((1, 10, 5), np.float32)}, "'ohlcv' FP32 [batch, window, 5] to route"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_router_requests(routers, protocol, case, inputs, expected):
    _, _, client = routers
    if protocol == "grpc":
        with pytest.raises(grpc.RpcError) as error:
            client.infer_grpc("thompson-router", inputs)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
        assert expected in error.value.details()
    else:
        with pytest.raises(RestError) as error:
            client.infer_rest("thompson-router", inputs)
        assert error.value.status == 400, error.value.message
        assert expected in error.value.message


def test_short_ttl_expires_pending_decisions(routers, window):
    """A time-to-live of a microsecond has passed by the time any feedback arrives (no sleep needed)."""
    _, _, client = routers
    client.infer_grpc("thompson-short-ttl", {"ohlcv": window}, request_id="soon-old")
    answer = client.infer_grpc("thompson-short-ttl", {"decision_id": ids("soon-old"), "reward": np.array([1.0])})
    assert answer["status"] == ["expired"]


def _arms_of(client, router, window, n):
    return [client.infer_grpc(router, {"ohlcv": window})["arm"][0] for _ in range(n)]


def _health(client, router, **healthy):
    inputs = {"arm": ids(*healthy), "healthy": np.array([int(v) for v in healthy.values()], np.int32)}
    return client.infer_grpc(router, inputs)["status"]


def test_unhealthy_arms_get_no_traffic_and_the_default_is_the_fallback(routers, window):
    _, _, client = routers
    assert _health(client, "thompson-health", enhanced=False) == ["unhealthy"]
    assert set(_arms_of(client, "thompson-health", window, 30)) == {"baseline", "lightweight"}
    _health(client, "thompson-health", lightweight=False, baseline=False)
    answers = [client.infer_grpc("thompson-health", {"ohlcv": window}) for _ in range(5)]
    assert {a["arm"][0] for a in answers} == {"baseline"} and {a["propensity"][0] for a in answers} == {1.0}
    _health(client, "thompson-health", enhanced=True, lightweight=True, baseline=True)
    assert set(_arms_of(client, "thompson-health", window, 60)) == set(ARMS)


def test_errors_reported_by_feedback_take_an_arm_out(routers, window):
    _, _, client = routers
    decisions = {}
    while True:  # three decisions that went to the same arm
        answer = client.infer_grpc("thompson-health", {"ohlcv": window})
        decisions.setdefault(answer["arm"][0], []).append(answer["decision_id"][0])
        failing = next((arm for arm, d in decisions.items() if len(d) >= 3), None)
        if failing:
            break
    feedback = {"decision_id": ids(*decisions[failing][:2]), "reward": np.array([0.0, 0.0]),
                "error": np.array([1, 1], np.int32)}
    assert client.infer_grpc("thompson-health", feedback)["status"] == ["applied", "applied"]
    assert failing not in _arms_of(client, "thompson-health", window, 40)
    # A late success for an older decision ends no cooldown.
    late = {"decision_id": ids(decisions[failing][2]), "reward": np.array([1.0]), "error": np.array([0], np.int32)}
    assert client.infer_grpc("thompson-health", late)["status"] == ["applied"]
    assert failing not in _arms_of(client, "thompson-health", window, 40)
    _health(client, "thompson-health", **{failing: True})
    assert failing in _arms_of(client, "thompson-health", window, 60)


def _window_in_regime(regime):
    close = ohlcv_windows("nasdaq", [4999], 5000)[0, :, 3]
    regimes = regime_series(close)
    end = int(np.flatnonzero(regimes == REGIMES.index(regime))[-1])
    return ohlcv_windows("nasdaq", [end], MIN_WINDOW)  # a real window whose last row is in `regime`


@pytest.mark.parametrize("regime", REGIMES)
def test_regime_router_rules(routers, regime):
    _, _, client = routers
    routes = {"high_volatility": "robust", "bull": "aggressive", "bear": "conservative", "sideways": "baseline"}
    window = _window_in_regime(regime)
    answer = client.infer_rest("regime-router", {"ohlcv": window})
    assert answer["regime"] == [regime]
    assert answer["arm"] == [routes[regime]] and answer["propensity"][0] == 1.0
    np.testing.assert_array_equal(answer[routes[regime]], window)


def test_regime_router_vix_input(routers):
    _, _, client = routers
    calm_bear = _window_in_regime("bear")
    answer = client.infer_grpc("regime-router", {"ohlcv": calm_bear, "vix": np.array([41.0])})
    assert answer["regime"] == ["high_volatility"] and answer["arm"] == ["robust"]
    assert "vix" not in answer


def test_regime_router_learned_mode_keeps_one_posterior_per_regime(routers):
    _, server, client = routers
    for regime, reward in (("bull", 1.0), ("bear", 0.0)):
        answer = client.infer_grpc("regime-learned", {"ohlcv": _window_in_regime(regime)},
                                   request_id=f"learn-{regime}")
        assert answer["regime"] == [regime] and answer["propensity"][0] == pytest.approx(0.25)
        status = client.infer_grpc("regime-learned", {"decision_id": ids(f"learn-{regime}"),
                                                      "reward": np.array([reward])})["status"]
        assert status == ["applied"]
        arm = answer["arm"][0]
        state = stored_state(server, "regime-learned", context=regime)
        assert (state[arm].rewards, state[arm].total) == (1, reward)


def test_regime_router_feedback_over_rest(routers):
    _, server, client = routers
    window = _window_in_regime("bear")
    answer = client.infer_rest("regime-router", {"ohlcv": window}, request_id="rest-bear")
    assert answer["arm"] == ["conservative"]
    status = client.infer_rest("regime-router", {"decision_id": ids("rest-bear", "rest-bear"),
                                                 "reward": np.array([1.0, 1.0])})["status"]
    assert status == ["applied", "duplicate"]
    assert stored_state(server, "regime-router", context="bear")["conservative"].rewards == 1


def test_gaussian_rewards_with_discounting_through_a_served_router(routers, window):
    """``reward: gaussian`` and ``discount < 1`` over the wire give exactly the pure policy's posterior."""
    _, server, client = routers
    rewards = [0.012, -0.004, 0.007, -0.011, 0.003, 0.0005]
    arms = [client.infer_grpc("thompson-gaussian", {"ohlcv": window}, request_id=f"g-{i}")["arm"][0]
            for i in range(len(rewards))]
    for i, reward in enumerate(rewards):  # one at a time: with discounting the order matters
        status = client.infer_grpc("thompson-gaussian", {"decision_id": ids(f"g-{i}"), "reward": np.array([reward])})
        assert status["status"] == ["applied"]
    extra = json.loads((server.repository / "thompson-gaussian" / "model-settings.json").read_text())
    policy = RouterSettings.from_extra(extra["parameters"]["extra"]).policy()
    expected = policy.initial_state()
    for arm, reward in zip(arms, rewards, strict=True):
        expected = policy.update(expected, arm, reward)
    stored = stored_state(server, "thompson-gaussian")
    assert stored.keys() == expected.keys()
    for arm in expected:
        assert stored[arm].rewards == expected[arm].rewards
        assert stored[arm].weight == pytest.approx(expected[arm].weight, rel=1e-12)
        assert stored[arm].total == pytest.approx(expected[arm].total, rel=1e-12, abs=1e-15)
    assert sum(s.weight for s in stored.values()) < len(rewards)  # the discount did forget something


def test_rules_mode_falls_back_to_a_healthy_arm(routers):
    _, _, client = routers
    bull = _window_in_regime("bull")
    _health(client, "regime-fallback", aggressive=False)
    answer = client.infer_grpc("regime-fallback", {"ohlcv": bull})
    assert answer["regime"] == ["bull"] and answer["arm"] == ["baseline"]  # the default arm
    _health(client, "regime-fallback", baseline=False)
    answer = client.infer_grpc("regime-fallback", {"ohlcv": bull})
    assert answer["arm"][0] in {"robust", "conservative"} and answer["propensity"] == [1.0]  # a healthy one
    _health(client, "regime-fallback", aggressive=True, baseline=True)
    assert client.infer_grpc("regime-fallback", {"ohlcv": bull})["arm"] == ["aggressive"]
