"""What both routers share: decisions, delayed feedback, arm health, state and metrics.

A request is one of three kinds, told apart by its inputs (DESIGN.md section 3):

- decision: ``ohlcv`` -> one output named after the chosen arm carrying the input unchanged, plus
  ``arm`` BYTES [1], ``propensity`` FP64 [1] and ``decision_id`` BYTES [1];
- feedback: ``decision_id`` BYTES [n] and ``reward`` FP64 [n] (optional ``error`` INT32/BOOL [n]: the arm
  failed on that decision) -> ``status`` BYTES [n], one of ``store.FeedbackOutcome`` per id;
- health: ``arm`` BYTES [n] and ``healthy`` INT32/BOOL [n] -> ``status`` BYTES [n].
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import replace
from functools import partial

import numpy as np
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse

from seldon_market_ab import metrics
from seldon_market_ab.mlserver_compat import request_headers
from seldon_market_ab.protocol import (
    InvalidInput,
    check_prices,
    check_windows,
    decode_float_tensor,
    decode_numbers,
    decode_strings,
    encode_strings,
    encode_tensor,
)
from seldon_market_ab.settings import extra_of

from .bandit import ArmStats, draw, state_from_dict, state_to_dict
from .settings import RouterSettings
from .stores import ArmHealth, Decision, FeedbackOutcome, open_store

WHOLE_ROUTER = "all"  # the context of a router without contexts
EXPIRY_SWEEP_SECONDS = 600.0  # how often (at most) decisions older than their time-to-live are deleted
DELAY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
REWARD_BUCKETS = (-0.05, -0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02, 0.05, 0.5, 1.0)


def _router_metrics() -> dict:
    return {
        "decisions": metrics.counter("router_decisions_total", "Routing decisions by arm", ["router", "arm"]),
        "regimes": metrics.counter("router_decisions_by_regime_total", "Routing decisions by regime",
                                   ["router", "regime"]),
        "feedback": metrics.counter("router_feedback_total", "Feedback rows by outcome (applied, duplicate, "
                                    "conflict, unknown, expired)", ["router", "outcome"]),
        "reward": metrics.histogram("router_reward", "Applied rewards by arm", ["router", "arm"], REWARD_BUCKETS),
        "delay": metrics.histogram("router_feedback_delay_seconds", "Time from decision to applied feedback",
                                   ["router"], DELAY_BUCKETS),
        "pending": metrics.gauge("router_pending_decisions", "Decisions waiting for feedback", ["router"]),
        "mean": metrics.gauge("router_posterior_mean", "Posterior mean reward", ["router", "context", "arm"]),
        "lower": metrics.gauge("router_posterior_lower", "Posterior 2.5% quantile of the mean reward",
                               ["router", "context", "arm"]),
        "upper": metrics.gauge("router_posterior_upper", "Posterior 97.5% quantile of the mean reward",
                               ["router", "context", "arm"]),
        "healthy": metrics.gauge("router_arm_healthy", "1 if the arm may get traffic", ["router", "arm"]),
        "rejected": metrics.counter("router_rejected_requests_total", "Requests rejected as bad input",
                                    ["router", "reason"]),
    }


class BanditRouter(MLModel):
    """Base runtime; subclasses say how a decision's context and arm are chosen."""

    settings_class: type[RouterSettings] = RouterSettings
    clock = staticmethod(time.time)  # epoch seconds; tests inject their own

    async def load(self) -> bool:
        self.config = self.settings_class.from_extra(extra_of(self._settings), self.name)
        self.policy = self.config.policy()
        # State never lives in the model folder: on Seldon that folder is a downloaded artifact.
        self.store = open_store(self.config.store_url(self.name), self.name, self.config.state_path())
        self.rng = np.random.default_rng(None if self.config.seed < 0 else self.config.seed)
        self._metrics = _router_metrics()
        self._probability_cache: dict = {}
        self._next_sweep = self.clock()
        self._publish_state()
        return True

    async def unload(self) -> bool:
        if hasattr(self, "store"):  # load() may have failed before opening it
            self.store.close()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        names = {i.name for i in payload.inputs}
        try:
            if "reward" in names:
                outputs = self._feedback(payload)
            elif "healthy" in names:
                outputs = self._health(payload)
            else:
                outputs = self._decide(payload)
        except InvalidInput as error:
            self._metrics["rejected"].labels(self.name, error.reason).inc()
            raise
        return InferenceResponse(id=payload.id, model_name=self.name, model_version=self.version, outputs=outputs)

    # decisions -----------------------------------------------------------------------------------------------

    optional_inputs: tuple[str, ...] = ()  # decision inputs allowed beside `ohlcv`

    @property
    def min_rows(self) -> int:
        return self.config.min_window

    def choose(self, ohlcv: np.ndarray, payload: InferenceRequest, eligible: tuple[str, ...]):
        """(context, arm, propensity) for one decision."""
        return (WHOLE_ROUTER, *self.thompson(WHOLE_ROUTER, eligible))

    def decision_outputs(self, decision: Decision) -> list:
        """Outputs beside the arm's tensor, ``arm``, ``propensity`` and ``decision_id``."""
        return []

    def _decide(self, payload: InferenceRequest) -> list:
        name, ohlcv = decode_float_tensor(payload, ("ohlcv",), "'ohlcv' FP32 [batch, window, 5] to route, or "
                                          "'decision_id' BYTES [n] with 'reward' FP64 [n] as feedback, or "
                                          "'arm' BYTES [n] with 'healthy' INT32 [n] as a health message",
                                          self.optional_inputs)
        check_prices(check_windows(name, ohlcv, 5, self.min_rows, "open, high, low, close, volume"))
        now = self.clock()
        context, arm, propensity = self.choose(ohlcv, payload, self._eligible(now))
        candidate = Decision(self._decision_id(payload), context, arm, float(propensity), now)
        decision = self.store.record_decision(candidate)  # a retried request id gets its first decision
        if decision is candidate:
            self._metrics["decisions"].labels(self.name, decision.arm).inc()
            if decision.context != WHOLE_ROUTER:
                self._metrics["regimes"].labels(self.name, decision.context).inc()
        self._sweep_expired(now)
        self._metrics["pending"].labels(self.name).set(self.store.pending_count())
        return [encode_tensor(decision.arm, ohlcv), encode_strings("arm", [decision.arm]),
                encode_tensor("propensity", np.array([decision.propensity], dtype=np.float64)),
                encode_strings("decision_id", [decision.decision_id]), *self.decision_outputs(decision)]

    def _sweep_expired(self, now: float) -> None:
        """Forget decisions older than their time-to-live, at most every ``EXPIRY_SWEEP_SECONDS``."""
        if now >= self._next_sweep:
            self.store.expire(now, self.config.decision_ttl_seconds)
            self._next_sweep = now + EXPIRY_SWEEP_SECONDS

    def state(self, stored: dict | None):
        """A context's policy state: the stored statistics, with fresh ones for arms added since."""
        return {**self.policy.initial_state(), **(state_from_dict(stored) if stored else {})}

    def thompson(self, context: str, eligible: tuple[str, ...]) -> tuple[str, float]:
        """Thompson sampling with the shared posterior of ``context``, among ``eligible`` arms."""
        stored = self.store.load_states().get(context)
        key = (context, eligible, repr(stored))
        probabilities = self._probability_cache.get(key)
        if probabilities is None:
            probabilities = self.policy.probabilities(self.state(stored), eligible)
            if len(self._probability_cache) > 64:  # states change only with feedback: keep the recent ones
                self._probability_cache.clear()
            self._probability_cache[key] = probabilities
        return draw(probabilities, self.rng)

    @staticmethod
    def _decision_id(payload: InferenceRequest) -> str:
        """The request id, else Seldon's ``x-request-id`` header, else a new UUID."""
        return payload.id or request_headers(payload).get("x-request-id") or str(uuid.uuid4())

    # health --------------------------------------------------------------------------------------------------

    def _eligible(self, now: float) -> tuple[str, ...]:
        health = self.store.load_health()
        healthy = tuple(a for a in self.config.arms if health.get(a, ArmHealth()).healthy(now))
        return healthy or (self.config.fallback_arm,)

    def _health(self, payload: InferenceRequest) -> list:
        arms = decode_strings(payload, "arm", "unknown_arm")
        healthy = decode_numbers(payload, "healthy", ("BOOL", "INT32", "INT64"), len(arms))
        unknown = sorted(set(arms) - set(self.config.arms))
        if unknown:
            raise InvalidInput(f"unknown arms {unknown}; arms are {list(self.config.arms)}", "unknown_arm")
        for arm, ok in zip(arms, healthy, strict=True):
            self.store.update_health(arm, lambda h, ok=bool(ok): ArmHealth() if ok else
                                     replace(h, unhealthy_until=math.inf))
        self._publish_health()
        return [encode_strings("status", ["healthy" if ok else "unhealthy" for ok in healthy])]

    def _record_error(self, arm: str, error: bool, now: float) -> None:
        def update(health: ArmHealth) -> ArmHealth:
            if not error:  # a success ends an error streak, but not a cooldown or a health message
                return replace(health, consecutive_errors=0) if health.healthy(now) else health
            errors = health.consecutive_errors + 1
            if errors >= self.config.max_consecutive_errors:
                return ArmHealth(errors, max(health.unhealthy_until, now + self.config.unhealthy_cooldown_seconds))
            return replace(health, consecutive_errors=errors)

        self.store.update_health(arm, update)

    # feedback ------------------------------------------------------------------------------------------------

    def _feedback(self, payload: InferenceRequest) -> list:
        ids = decode_strings(payload, "decision_id", "invalid_decision_id")
        try:
            rewards = decode_numbers(payload, "reward", ("FP64", "FP32"), len(ids)).astype(np.float64)
        except InvalidInput as error:
            raise InvalidInput(str(error), "invalid_reward" if error.reason == "non_finite" else error.reason) \
                from None
        errors = np.zeros(len(ids), dtype=bool)
        if any(i.name == "error" for i in payload.inputs):
            errors = decode_numbers(payload, "error", ("BOOL", "INT32", "INT64"), len(ids)).astype(bool)
        for reward in rewards:
            try:
                self.policy.family.check_reward(float(reward))
            except ValueError as error:
                raise InvalidInput(f"input 'reward': {error}", "invalid_reward") from None

        now = self.clock()
        statuses = []
        for decision_id, reward, error in zip(ids, rewards, errors, strict=True):
            update = partial(self._updated_state, reward=float(reward))
            outcome, decision = self.store.apply_feedback(decision_id, float(reward), now,
                                                          self.config.decision_ttl_seconds, update)
            self._metrics["feedback"].labels(self.name, outcome.value).inc()
            if outcome is FeedbackOutcome.APPLIED:
                self._metrics["reward"].labels(self.name, decision.arm).observe(float(reward))
                self._metrics["delay"].labels(self.name).observe(now - decision.created)
                self._record_error(decision.arm, bool(error), now)
            statuses.append(outcome.value)
        self._publish_state()
        return [encode_strings("status", statuses)]

    def _updated_state(self, stored: dict | None, decision: Decision, reward: float) -> dict:
        state = self.state(stored)
        state.setdefault(decision.arm, ArmStats())  # decided before the arm was removed from the settings
        return state_to_dict(self.policy.update(state, decision.arm, reward))

    # metrics -------------------------------------------------------------------------------------------------

    def _publish_state(self) -> None:
        for context, stored in self.store.load_states().items():
            for arm, (mean, low, high) in self.policy.summary(self.state(stored)).items():
                self._metrics["mean"].labels(self.name, context, arm).set(mean)
                self._metrics["lower"].labels(self.name, context, arm).set(low)
                self._metrics["upper"].labels(self.name, context, arm).set(high)
        self._metrics["pending"].labels(self.name).set(self.store.pending_count())
        self._publish_health()

    def _publish_health(self) -> None:
        eligible = self._eligible(self.clock())
        for arm in self.config.arms:
            self._metrics["healthy"].labels(self.name, arm).set(1.0 if arm in eligible else 0.0)
