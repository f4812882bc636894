"""Router state shared across parallel workers and replicas, and kept across restarts and SIGKILL.

"A single-worker run fed the same feedback" is the pure policy replaying the acknowledged
(arm, reward) pairs in process: with discount 1 the posterior does not depend on order, so the
shared state must equal it exactly.
"""

import signal
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.routers.bandit import ArmStats, state_from_dict
from seldon_market_ab.routers.settings import RouterSettings
from seldon_market_ab.routers.stores import open_store
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MIN_WINDOW, add_router

WINDOW = ohlcv_windows("goog", [1500], MIN_WINDOW)


def reward_of(decision_id: str) -> float:
    return float(int(decision_id.split("-")[-1]) % 3 != 0)


def make_decisions(client, prefix, n, threads=8) -> dict[str, str]:
    def decide(i):
        answer = client.infer_grpc("thompson-router", {"ohlcv": WINDOW}, request_id=f"{prefix}-{i}")
        return answer["decision_id"][0], answer["arm"][0]

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(decide, range(n)))


def send_feedback(client, decision_ids, threads=8) -> list[str]:
    def feed(decision_id):
        answer = client.infer_grpc("thompson-router", {"decision_id": np.array([decision_id], dtype=object),
                                                       "reward": np.array([reward_of(decision_id)])})
        return answer["status"][0]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(feed, decision_ids))


def replay(decisions: dict[str, str], extra: dict):
    policy = RouterSettings.from_extra(extra).policy()
    state = policy.initial_state()
    for decision_id, arm in decisions.items():
        state = policy.update(state, arm, reward_of(decision_id))
    return policy, state


def shared_state(store_url, state_dir):
    store = open_store(store_url, "thompson-router", state_dir)
    try:
        return state_from_dict(store.load_states()["all"]), store.pending_count()
    finally:
        store.close()


def router_samples(server, name: str) -> dict[tuple, float]:
    """``{sorted label items (router label dropped): value}`` of one sample name for thompson-router."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {tuple(sorted((k, v) for k, v in s.labels.items() if k != "router")): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name and s.labels.get("router") == "thompson-router"}


def posterior_gauges(server) -> dict[str, float]:
    return {dict(labels)["arm"]: value for labels, value in
            router_samples(server, "market_ab_router_posterior_mean").items()}


def extra_of(folder):
    import json

    return json.loads((folder / "model-settings.json").read_text())["parameters"]["extra"]


@pytest.mark.parametrize("workers", [0, 2])
def test_parallel_workers_share_one_posterior(tmp_path, workers):
    folder = add_router(tmp_path, "thompson-router", "thompson-router")
    with MLServerProcess(tmp_path, parallel_workers=workers) as server:
        client = InferenceClient(server.grpc_address)
        decisions = make_decisions(client, "w", 90)
        assert send_feedback(client, list(decisions)) == ["applied"] * 90
        assert send_feedback(client, list(decisions)[:10]) == ["duplicate"] * 10
        gauges = posterior_gauges(server)
        decided = router_samples(server, "market_ab_router_decisions_total")
        feedback = router_samples(server, "market_ab_router_feedback_total")
        rewards = router_samples(server, "market_ab_router_reward_count")
        pending = router_samples(server, "market_ab_router_pending_decisions")
        delays = router_samples(server, "market_ab_router_feedback_delay_seconds_count")
        commit_writes = router_samples(server, "market_ab_router_commit_writes_sum")
        client.close()
    # Counters summed over the workers by MLServer's multiprocess collector.
    for arm in set(decisions.values()):
        made = sum(1 for a in decisions.values() if a == arm)
        assert decided[(("arm", arm),)] == made and rewards[(("arm", arm),)] == made
    assert feedback == {(("outcome", "applied"),): 90, (("outcome", "duplicate"),): 10}
    assert pending == {(): 0} and delays == {(): 90}
    # every feedback row was an awaited write; decisions were written too, in commits nobody waited for
    assert commit_writes[(("writes", "awaited"),)] == 100 and commit_writes[(("writes", "all"),)] >= 190
    policy, expected = replay(decisions, extra_of(folder))
    state, pending = shared_state("sqlite:///thompson-router.db", server.state_dir)
    assert state == expected and pending == 0
    assert sum(s.rewards for s in state.values()) == 90
    for arm, (mean, _, _) in policy.summary(expected).items():
        assert gauges[arm] == pytest.approx(mean)


def test_replicas_share_state_through_redis(tmp_path, request):
    """Two MLServer processes (two replicas) on one Redis: feedback may reach the replica that did not decide."""
    store = router_store("redis", request)
    redis_url = store["store"]
    folders = [add_router(tmp_path / f"replica-{i}", "thompson-router", "thompson-router", **store) for i in (0, 1)]
    with MLServerProcess(folders[0].parent) as first, MLServerProcess(folders[1].parent) as second:
        clients = [InferenceClient(first.grpc_address), InferenceClient(second.grpc_address)]
        made = [make_decisions(clients[i], f"r{i}", 40) for i in (0, 1)]
        assert send_feedback(clients[1], list(made[0])) == ["applied"] * 40  # the other replica's decisions
        assert send_feedback(clients[0], list(made[1])) == ["applied"] * 40
        assert send_feedback(clients[0], list(made[0])[:5]) == ["duplicate"] * 5
        decisions = {**made[0], **made[1]}
        policy, expected = replay(decisions, extra_of(folders[0]))
        state, pending = shared_state(redis_url, folders[0])
        assert state == expected and pending == 0
        # Both replicas now decide from the same posterior.
        probabilities = policy.probabilities(expected)
        for client in clients:
            answer = client.infer_grpc("thompson-router", {"ohlcv": WINDOW})
            assert answer["propensity"][0] == pytest.approx(probabilities[answer["arm"][0]])
            client.close()


def router_store(kind: str, request) -> dict:
    """``extra`` settings for a router on SQLite (the default, in the state directory) or on a real Redis
    (flushed first: the Redis server is shared by the session)."""
    if kind == "sqlite":
        return {}
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return {"store": url}


@pytest.mark.parametrize(("stop_signal", "kind"), [(signal.SIGTERM, "sqlite"), (signal.SIGKILL, "sqlite"),
                                                   (signal.SIGKILL, "redis")],
                         ids=["restart-sqlite", "kill-9-sqlite", "kill-9-redis"])
def test_state_survives_restart_and_sigkill(tmp_path, request, stop_signal, kind):
    """Redis runs with ``appendonly yes`` (the ``redis_url`` fixture); SQLite commits with ``synchronous=FULL``."""
    store = router_store(kind, request)
    folder = add_router(tmp_path / "models", "thompson-router", "thompson-router", **store)
    state_dir = tmp_path / "state"
    server = MLServerProcess(folder.parent, parallel_workers=1, state_dir=state_dir).start()
    client = InferenceClient(server.grpc_address)
    decisions = make_decisions(client, "k", 60)
    answered = list(decisions)[:30]
    assert send_feedback(client, answered) == ["applied"] * 30
    client.close()
    server.stop(stop_signal)  # right after the last acknowledged feedback

    with MLServerProcess(folder.parent, parallel_workers=1, state_dir=state_dir) as restarted:
        client = InferenceClient(restarted.grpc_address)
        policy, expected_half = replay({d: decisions[d] for d in answered}, extra_of(folder))
        gauges = posterior_gauges(restarted)
        for arm, (mean, _, _) in policy.summary(expected_half).items():
            assert gauges[arm] == pytest.approx(mean)
        # Decisions made before the stop are still pending and take their feedback now.
        assert send_feedback(client, list(decisions)[30:]) == ["applied"] * 30
        assert send_feedback(client, answered[:3]) == ["duplicate"] * 3
        client.close()
    _, expected = replay(decisions, extra_of(folder))
    state, pending = shared_state(store.get("store", "sqlite:///thompson-router.db"), state_dir)
    assert state == expected and pending == 0


def test_changing_the_arms_keeps_serving_and_takes_late_feedback(tmp_path):
    import json

    folder = add_router(tmp_path / "models", "thompson-router", "thompson-router", warmup_rewards=0, min_share=0.0)
    state_dir = tmp_path / "state"
    with MLServerProcess(folder.parent, state_dir=state_dir) as server:
        client = InferenceClient(server.grpc_address)
        decisions = make_decisions(client, "c", 40)
        send_feedback(client, list(decisions)[:20])
        client.close()
    settings_path = folder / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    settings["parameters"]["extra"]["arms"] = "baseline,enhanced,robust"  # lightweight out, robust in
    settings_path.write_text(json.dumps(settings))
    with MLServerProcess(folder.parent, state_dir=state_dir) as server:
        client = InferenceClient(server.grpc_address)
        arms = {client.infer_grpc("thompson-router", {"ohlcv": WINDOW})["arm"][0] for _ in range(60)}
        assert "robust" in arms and arms <= {"baseline", "enhanced", "robust"}  # the new arm serves, the old not
        assert send_feedback(client, list(decisions)[20:]) == ["applied"] * 20  # includes lightweight's
        client.close()
    state, _ = shared_state("sqlite:///thompson-router.db", state_dir)
    removed = sum(1 for d in decisions.values() if d == "lightweight")
    assert state.get("lightweight", ArmStats()).rewards == removed


def snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_serving_a_router_writes_nothing_into_its_model_folder(tmp_path):
    """On Seldon the model folder is a downloaded artifact: state goes to the state directory."""
    folder = add_router(tmp_path / "models", "thompson-router", "thompson-router")
    before = snapshot(folder)
    with MLServerProcess(folder.parent, parallel_workers=1) as server:
        client = InferenceClient(server.grpc_address)
        decisions = make_decisions(client, "ro", 12)
        assert send_feedback(client, list(decisions)) == ["applied"] * 12
        client.close()
    assert snapshot(folder) == before
    assert (server.state_dir / "thompson-router.db").stat().st_size > 0
