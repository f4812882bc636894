"""Locust traffic through Seldon's routing (``market-ab serve`` or a cluster): held-out market days in date order
across instruments; after a delay, each answer's truth (its realised next-day move) goes to the outcomes model and,
as a reward, to the router that decided it, by request id.

    MARKET_AB_TARGET=mab.pipeline MARKET_AB_ROUTER=thompson-router MARKET_AB_GRPC=127.0.0.1:9001 \\
        locust -f loadtest/locustfile.py --headless -u 8 -r 8 -t 60s --stop-timeout 30 --host http://127.0.0.1:9000

Settings (environment): ``MARKET_AB_TARGET`` (the ``seldon-model`` header; default ``mab.pipeline``),
``MARKET_AB_ROUTER`` (where feedback goes; empty for none, e.g. an experiment), ``MARKET_AB_OUTCOMES`` (the outcomes
model; default ``outcomes``; empty for none), ``MARKET_AB_GRPC`` (the gRPC
address for ``GrpcUser``), ``MARKET_AB_FEEDBACK_DELAY`` (seconds; default 1), ``MARKET_AB_DAYS`` (held-out days
per instrument; default 250; each is sent once and the run ends when they are all sent, unless
``MARKET_AB_CYCLE=1``), ``MARKET_AB_LOG`` (a JSON-lines file: one line per request, one per feedback and one per
outcome, which the report joins). ``RestUser`` uses Locust's ``--host``. Both users share one sequence of days.
A run ends once every day was sent, every answer is in and every reward and outcome delivered (the last user waits
for them), so that requests sent = decisions = rewards = outcomes (failed requests have none). A run cut short by
``-t`` keeps what ``--stop-timeout`` lets the users finish, and tries to deliver what is still waiting (Locust may exit
before it all is).
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel: gRPC cooperates with gevent's loop

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from itertools import count  # noqa: E402

import gevent  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402
from locust import HttpUser, User, constant, events, task  # noqa: E402
from locust.exception import StopUser  # noqa: E402
from mlserver.types import InferenceResponse  # noqa: E402

from seldon_market_ab.client import InferenceClient, decode_outputs, json_body  # noqa: E402
from seldon_market_ab.runtimes.artifact import LSTMArtifact  # noqa: E402
from seldon_market_ab.training.dataset import heldout_days  # noqa: E402

TARGET = os.environ.get("MARKET_AB_TARGET", "mab.pipeline")
ROUTER = os.environ.get("MARKET_AB_ROUTER", "thompson-router")
OUTCOMES = os.environ.get("MARKET_AB_OUTCOMES", "outcomes")
GRPC_ADDRESS = os.environ.get("MARKET_AB_GRPC", "127.0.0.1:9001")
FEEDBACK_DELAY = float(os.environ.get("MARKET_AB_FEEDBACK_DELAY", "1"))
DAYS = int(os.environ.get("MARKET_AB_DAYS", "250"))
LOG_PATH = os.environ.get("MARKET_AB_LOG")
CYCLE = os.environ.get("MARKET_AB_CYCLE") == "1"
INSTRUMENTS = ("sp500", "nasdaq")

_days = None
_sequence = count()
_quitting: list = []  # the one greenlet that ends the run
_in_flight = [0]  # requests sent and not yet answered (and not yet given their truth's timer)
_pending: dict[str, gevent.Greenlet] = {}  # request id -> its truth (reward, outcome) waiting for its delay
_log = open(LOG_PATH, "a", buffering=1) if LOG_PATH else None  # noqa: SIM115 - open for the whole run


def next_day():
    """The next held-out day, shared by every user; None once every day was sent (unless ``MARKET_AB_CYCLE=1``:
    then the sequence starts again, for load rather than for statistics, since a repeated day is not new evidence)."""
    global _days
    if _days is None:
        rows = LSTMArtifact.load(os.environ.get("MARKET_AB_MODELS", "models") + "/baseline").min_window
        _days = heldout_days(INSTRUMENTS, DAYS, rows)
    index = next(_sequence)
    if index >= len(_days) and not CYCLE:
        return None
    return index, _days[index % len(_days)]


def record(entry: dict) -> None:
    if _log:
        _log.write(json.dumps(entry) + "\n")


class CallFailed(Exception):
    def __init__(self, message: str, route: str | None):
        super().__init__(message)
        self.route = route


def arm_of_route(route: str | None) -> str | None:
    """``:faulty_1:`` -> ``faulty`` (the candidate an experiment chose, also when it failed)."""
    if not route:
        return None
    last = route.strip(":").split(":")[-1]
    return last.rsplit(".pipeline", 1)[0] if last.endswith(".pipeline") else last.rsplit("_", 1)[0]


def served_by(outputs: dict) -> str | None:
    model = outputs.get("model")
    return str(model[0]).split(":")[0] if model is not None and len(model) else None


class MarketTraffic:
    """What both users do: send a day, record the answer, reward it later."""

    protocol = "grpc"

    def send_day(self) -> None:
        taken = next_day()
        if taken is None:  # every day was sent once: the run is over once every answer is in and every reward sent
            while _in_flight[0] or _pending:
                gevent.sleep(0.05)
            if not _quitting:
                _quitting.append(gevent.spawn(self.environment.runner.quit))
            raise StopUser()
        _in_flight[0] += 1
        try:
            self._send(*taken)
        finally:
            _in_flight[0] -= 1

    def _send(self, t: int, day) -> None:
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        entry = {"kind": "request", "t": t, "time": time.time(), "protocol": self.protocol, "target": TARGET,
                 "request_id": request_id,
                 "date": day.date, "instrument": day.instrument, "regime": day.regime, "next_return": day.next_return}
        try:
            outputs, route = self.call(TARGET, {"ohlcv": day.ohlcv[None]}, request_id)
        except Exception as error:  # noqa: BLE001 - a failed request is data for the report
            route = getattr(error, "route", None)  # an experiment says which candidate failed
            record({**entry, "error": f"{type(error).__name__}: {error}"[:300], "route": route,
                    "arm": arm_of_route(route), "latency_ms": 1000 * (time.perf_counter() - started)})
            return
        latency_ms = 1000 * (time.perf_counter() - started)
        direction = int(np.asarray(outputs["direction"]).ravel()[0])
        correct = (direction == 1) == (day.next_return > 0)
        strategy_return = day.next_return if direction == 1 else -day.next_return
        # an experiment's candidate is its route (an A/A copy answers with the same model name); a pipeline's, the model
        arm = arm_of_route(route) or served_by(outputs)
        record({**entry, "latency_ms": latency_ms, "arm": arm, "route": route,
                "probability": float(np.asarray(outputs["probability"]).ravel()[0]), "direction": direction,
                "correct": bool(correct), "strategy_return": strategy_return})
        if ROUTER or OUTCOMES:
            _pending[request_id] = gevent.spawn_later(FEEDBACK_DELAY, self.report_truth, request_id, arm, correct,
                                                      strategy_return)

    def report_truth(self, request_id: str, arm: str, correct: bool, strategy_return: float) -> None:
        """A day later (``FEEDBACK_DELAY`` here): the reward to the router that decided, the outcome to the outcomes
        model."""
        try:
            if ROUTER:
                reward = float(correct)
                status = self._status(ROUTER, {"decision_id": np.array([request_id], dtype=object),
                                               "reward": np.array([reward])})
                record({"kind": "feedback", "request_id": request_id, "reward": reward, "status": status})
            if OUTCOMES:
                status = self._status(OUTCOMES, {"request_id": np.array([request_id], dtype=object),
                                                 "model": np.array([arm], dtype=object),
                                                 "correct": np.array([int(correct)], dtype=np.int32),
                                                 "return": np.array([strategy_return])})
                record({"kind": "outcome", "request_id": request_id, "model": arm, "correct": bool(correct),
                        "strategy_return": strategy_return, "status": status})
        finally:
            _pending.pop(request_id, None)

    def _status(self, target: str, inputs: dict) -> str:
        try:
            outputs, _ = self.call(target, inputs, uuid.uuid4().hex)
            return str(outputs["status"][0])
        except Exception as error:  # noqa: BLE001 - a failure is data for the report
            return f"error: {type(error).__name__}: {error}"[:300]


class GrpcUser(MarketTraffic, User):
    """Locust's custom-client pattern: the calls fire Locust's request events themselves."""

    wait_time = constant(0)
    protocol = "grpc"

    def on_start(self) -> None:
        self.client = InferenceClient(GRPC_ADDRESS, retries=0)

    def call(self, target: str, inputs: dict, request_id: str):
        started = time.perf_counter()
        exception = None
        try:
            answer = self.client.infer(target, inputs, "grpc", request_id)
            return answer.outputs, answer.route
        except grpc.RpcError as error:
            exception = error
            route = dict(error.initial_metadata() or ()).get("x-seldon-route")
            raise CallFailed(f"{error.code().name}: {error.details()}", route) from None
        finally:
            self.environment.events.request.fire(request_type="grpc", name=target, exception=exception,
                                                 response_time=1000 * (time.perf_counter() - started),
                                                 response_length=0, context={})

    @task
    def day(self) -> None:
        self.send_day()


class RestUser(MarketTraffic, HttpUser):
    wait_time = constant(0)
    protocol = "rest"

    def call(self, target: str, inputs: dict, request_id: str):
        name = target.rsplit(".", 1)[0]
        with self.client.post(f"/v2/models/{name}/infer", data=json_body(inputs, request_id), name=target,
                              headers={"Content-Type": "application/json", "seldon-model": target,
                                       "x-request-id": request_id}, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                raise CallFailed(f"HTTP {response.status_code}: {response.text[:200]}",
                                 response.headers.get("x-seldon-route"))
            outputs = decode_outputs(InferenceResponse.model_validate_json(response.content))
            return outputs, response.headers.get("x-seldon-route")

    @task
    def day(self) -> None:
        self.send_day()


@events.test_stop.add_listener
def deliver_pending_truth(environment, **_kwargs) -> None:
    """A run cut short (``-t``): try to deliver the rewards and outcomes still waiting for their delay, or on their
    way."""
    gevent.joinall(list(_pending.values()), timeout=FEEDBACK_DELAY + 60)
