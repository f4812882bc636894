"""Drills against real processes: a router killed under feedback load, Redis killed and restarted under load, and
Redis hung while an LSTM in the same server keeps answering; the outcomes model killed under load. Nothing acknowledged
may be lost.

Concurrency is coordinated by events (kill after so many acknowledgements), never by sleeping; the only waits are
polls with a deadline for a restarted Redis to be reachable again."""

import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from seldon_market_ab.client import InferenceClient, RestError
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MIN_WINDOW, RedisServer, add_router, copy_repository, set_extra

WINDOW = ohlcv_windows("nasdaq", [3900], MIN_WINDOW)
ROUTER = "thompson-router"


def feedback(client, decision_id: str, reward: float = 1.0, timeout: float = 30.0) -> str:
    answer = client.infer_grpc(ROUTER, {"decision_id": np.array([decision_id], dtype=object),
                                        "reward": np.array([reward])}, timeout=timeout)
    return answer["status"][0]


def decide(client, decision_id: str | None = None, timeout: float = 30.0) -> dict:
    return client.infer_grpc(ROUTER, {"ohlcv": WINDOW}, request_id=decision_id, timeout=timeout)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_sigkill_under_feedback_load_loses_no_acknowledged_feedback(tmp_path, kind):
    redis = RedisServer(tmp_path / "redis").start() if kind == "redis" else None
    extra = {"store": redis.url} if redis else {}
    folder = add_router(tmp_path / "models", ROUTER, ROUTER, **extra)
    state = tmp_path / "state"
    try:
        server = MLServerProcess(folder.parent, parallel_workers=1, state_dir=state).start()
        client = InferenceClient(server.grpc_address)
        ids = [decide(client, f"k-{i}")["decision_id"][0] for i in range(300)]
        acknowledged, enough = [], threading.Event()

        def send(decision_id):
            try:
                if feedback(client, decision_id, timeout=10) == "applied":
                    acknowledged.append(decision_id)
                    if len(acknowledged) >= 100:
                        enough.set()
            except grpc.RpcError:
                pass  # the server is gone: not acknowledged

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, decision_id) for decision_id in ids]
            assert enough.wait(60)
            server.stop(signal.SIGKILL)  # while feedback is still in flight
            for future in futures:
                future.result()
        client.close()
        assert 100 <= len(acknowledged) < len(ids)

        with MLServerProcess(folder.parent, parallel_workers=1, state_dir=state) as restarted:
            client = InferenceClient(restarted.grpc_address)
            statuses = [feedback(client, decision_id) for decision_id in acknowledged]
            client.close()
        assert set(statuses) == {"duplicate"}, "an acknowledged reward was lost"
    finally:
        if redis:
            redis.stop()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_sigkill_under_outcome_load_loses_no_acknowledged_outcome(tmp_path, kind):
    redis = RedisServer(tmp_path / "redis").start() if kind == "redis" else None
    repository = copy_repository(tmp_path / "models", ["outcomes"])
    if redis:
        set_extra(repository / "outcomes", store=redis.url)
    state = tmp_path / "state"
    ids = [f"o-{i}" for i in range(400)]
    try:
        server = MLServerProcess(repository, parallel_workers=1, state_dir=state).start()
        client = InferenceClient(server.grpc_address)
        acknowledged, enough = [], threading.Event()

        def send(request_id):
            try:
                if client.send_outcomes([request_id], ["baseline"], [1], [0.01], timeout=10) == ["recorded"]:
                    acknowledged.append(request_id)
                    if len(acknowledged) >= 100:
                        enough.set()
            except grpc.RpcError:
                pass  # the server is gone: not acknowledged

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, request_id) for request_id in ids]
            assert enough.wait(60)
            server.stop(signal.SIGKILL)  # while outcomes are still in flight
            for future in futures:
                future.result()
        client.close()
        assert 100 <= len(acknowledged) < len(ids)

        with MLServerProcess(repository, parallel_workers=1, state_dir=state) as restarted:
            client = InferenceClient(restarted.grpc_address)
            statuses = client.send_outcomes(acknowledged, ["baseline"] * len(acknowledged), [1] * len(acknowledged),
                                            [0.01] * len(acknowledged))
            client.close()
        assert set(statuses) == {"duplicate"}, "an acknowledged outcome was lost"
    finally:
        if redis:
            redis.stop()


def test_redis_killed_and_restarted_under_load(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    folder = add_router(tmp_path / "models", ROUTER, ROUTER, store=redis.url, default_arm="lightweight")
    try:
        with MLServerProcess(folder.parent) as server:
            client = InferenceClient(server.grpc_address, server.http_url)
            before = [decide(client, f"before-{i}")["decision_id"][0] for i in range(20)]
            assert [feedback(client, d) for d in before] == ["applied"] * 20

            redis.kill()
            decisions = [decide(client, f"during-{i}") for i in range(20)]  # never an error
            assert {d["arm"][0] for d in decisions} == {"lightweight"}
            assert all(d["fallback"] == ["store_unavailable"] and d["propensity"][0] == 1.0 for d in decisions)
            with pytest.raises(grpc.RpcError) as error:
                feedback(client, before[0])
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "state store is unavailable" in error.value.details() and str(redis.port) not in \
                error.value.details()
            with pytest.raises(RestError) as rest:
                client.infer_rest(ROUTER, {"decision_id": np.array([before[1]], dtype=object),
                                           "reward": np.array([1.0])})
            assert rest.value.status == 503

            redis.start()  # same port, same append-only file
            deadline = time.monotonic() + 30
            while True:  # the router reconnects by itself
                try:
                    status = feedback(client, before[0])
                    break
                except grpc.RpcError as retry:
                    assert retry.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                    time.sleep(0.2)
            assert status == "duplicate"  # acknowledged before the kill, still there
            assert {feedback(client, d) for d in before} == {"duplicate"}
            assert {feedback(client, d["decision_id"][0]) for d in decisions} == {"unknown"}  # fallbacks: unstored
            deadline = time.monotonic() + 30
            while "fallback" in (answer := decide(client)):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert answer["arm"][0] in ("baseline", "enhanced", "lightweight")
            client.close()
    finally:
        redis.stop()


def test_a_hung_redis_stalls_no_other_model(tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    repository = copy_repository(tmp_path / "models", ["baseline"])
    add_router(repository, ROUTER, ROUTER, store=redis.url)
    try:
        with MLServerProcess(repository) as server:
            client = InferenceClient(server.grpc_address, server.http_url)
            decide(client)
            redis.signal(signal.SIGSTOP)
            hung = ThreadPoolExecutor(4)
            router_calls = [hung.submit(decide, client, None, 30) for _ in range(4)]
            for _ in range(20):  # the LSTM beside the router answers at once, hang or not; so does liveness
                answer = client.infer_grpc("baseline", {"ohlcv": WINDOW}, timeout=1.5)
                assert answer["probability"].shape == (1,)
                assert urllib.request.urlopen(f"{server.http_url}/v2/health/live", timeout=1.5).status == 200
            answers = [call.result(timeout=30) for call in router_calls]  # every router call is answered too
            assert all(answer["arm"][0] in ("baseline", "enhanced", "lightweight") for answer in answers)
            # (a decision within SNAPSHOT_MAX_AGE_SECONDS of the last read needs no store; later ones fall back)
            late = decide(client, timeout=30)
            assert late["fallback"] == ["store_unavailable"] and late["propensity"][0] == 1.0
            redis.signal(signal.SIGCONT)
            hung.shutdown()
            client.close()
    finally:
        redis.signal(signal.SIGCONT)
        redis.stop()


def test_an_sqlite_write_lock_held_elsewhere_stalls_no_decision(tmp_path):
    """Another process holds the state file's write lock: decisions and the LSTM go on, feedback is a retryable
    UNAVAILABLE, and once the lock is released the same feedback is applied."""
    import sqlite3

    repository = copy_repository(tmp_path / "models", ["baseline"])
    add_router(repository, ROUTER, ROUTER)
    with MLServerProcess(repository) as server:
        client = InferenceClient(server.grpc_address, server.http_url)
        decision_id = decide(client, "locked-1")["decision_id"][0]
        client.infer_grpc("baseline", {"ohlcv": WINDOW})
        locker = sqlite3.connect(server.state_dir / f"{ROUTER}.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # the write lock, held
        try:
            assert decide(client, timeout=5)["arm"][0] in ("baseline", "enhanced", "lightweight")
            assert client.infer_grpc("baseline", {"ohlcv": WINDOW}, timeout=1.5)["probability"].shape == (1,)
            live = urllib.request.urlopen(f"{server.http_url}/v2/health/live", timeout=1.5)
            assert live.status == 200
            with pytest.raises(grpc.RpcError) as error:
                feedback(client, decision_id)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        deadline = time.monotonic() + 30
        while True:  # the writer was waiting on the lock; its queued write may land first
            try:
                assert feedback(client, decision_id) in ("applied", "duplicate")
                break
            except grpc.RpcError as retry:
                assert retry.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                time.sleep(0.2)
        client.close()
