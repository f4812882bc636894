"""What both routers share: decisions, delayed feedback, arm health, state and metrics.

A request is one of three kinds, told apart by its inputs (DESIGN.md section 3):

- decision: ``ohlcv`` -> one output named after the chosen arm carrying the input unchanged, plus
  ``arm`` BYTES [1], ``propensity`` FP64 [1] and ``decision_id`` BYTES [1];
- feedback: ``decision_id`` BYTES [n] and ``reward`` FP64 [n] (optional ``error`` INT32/BOOL [n]: the arm
  failed on that decision) -> ``status`` BYTES [n], one of ``store.FeedbackOutcome`` per id;
- health: ``arm`` BYTES [n] and ``healthy`` INT32/BOOL [n] -> ``status`` BYTES [n].

``BanditRouter.signature`` states all three for the model's metadata, each tensor marked with its request kind.

The hot path reads, never writes and never waits on a disk: a decision checks the store's version
(one indexed read), reuses its snapshot of states, health and the propensities derived from each
state, draws, and queues its own record for the writer thread, which commits it with whatever else
is queued. Feedback and health messages wait for their group commit, so an acknowledged reward is
durable. The propensities are derived once per state change, by the writer, and stored beside the
state for every worker and replica to read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from concurrent.futures import Future
from dataclasses import replace
from functools import partial

import numpy as np
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse

from seldon_market_ab import metrics
from seldon_market_ab.metadata import Signature, TensorSpec, serve_signature
from seldon_market_ab.mlserver_compat import UNAVAILABLE, install_patches, request_headers
from seldon_market_ab.protocol import (
    REQUEST_ID,
    REQUEST_ID_RULE,
    InvalidInput,
    check_prices,
    check_request_id,
    check_windows,
    decode_float_tensor,
    decode_numbers,
    decode_strings,
    echo_input,
    encode_strings,
    encode_tensor,
)
from seldon_market_ab.settings import extra_of

from .bandit import ArmStats, draw, state_from_dict, state_to_dict
from .settings import RouterSettings
from .stores import (
    ApplyFeedback,
    ArmHealth,
    Decision,
    Expire,
    FeedbackOutcome,
    RecordDecision,
    Snapshot,
    StoreUnavailable,
    StoreWriter,
    UpdateHealth,
    open_store,
)

logger = logging.getLogger(__name__)
install_patches()  # in MLServer's main process too, which imports this module to load the model

WHOLE_ROUTER = "all"  # the context of a router without contexts
EXPIRY_SWEEP_SECONDS = 600.0  # how often (at most) decisions older than their time-to-live are deleted
DERIVE_WHILE_DECIDING_SECONDS = 0.5  # rarer decisions derive propensities for themselves (~0.2 ms, once per state)
SNAPSHOT_MAX_AGE_SECONDS = 0.01  # how stale a decision's view of other workers' feedback may be
STORE_DEADLINE_SECONDS = 2.0  # a store read from a decision, or a feedback's commit, that takes longer has failed
STORE_RETRY_SECONDS = 1.0  # after a store failure, decisions fall back without asking the store for this long
FALLBACK = "fallback"  # output of a decision made without the store: the reason
DECISION, FEEDBACK, HEALTH = ({"request": kind} for kind in ("decision", "feedback", "health"))
OPTIONAL = {"optional": True}
WINDOWS = (-1, -1, 5)  # ohlcv: [batch, rows, open high low close volume]
DELAY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
REWARD_BUCKETS = (-0.05, -0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02, 0.05, 0.5, 1.0)
COMMIT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _observe_commit(writes: dict, all_writes: int, awaited: int) -> None:
    writes["all"].observe(all_writes)
    if awaited:
        writes["awaited"].observe(awaited)


def _router_metrics() -> dict:
    return metrics.cached({
        "decisions": metrics.counter("router_decisions_total", "Routing decisions by arm", ["router", "arm"]),
        "regimes": metrics.counter("router_decisions_by_regime_total", "Routing decisions by regime",
                                   ["router", "regime"]),
        "feedback": metrics.counter("router_feedback_total", "Feedback rows by outcome (applied, duplicate, "
                                    "conflict, unknown, expired)", ["router", "outcome"]),
        "reward": metrics.histogram("router_reward", "Applied rewards by arm", ["router", "arm"], REWARD_BUCKETS),
        "delay": metrics.histogram("router_feedback_delay_seconds", "Time from decision to applied feedback",
                                   ["router"], DELAY_BUCKETS),
        "commit_writes": metrics.histogram("router_commit_writes", "Writes per group commit of the state store: all, "
                                           "and awaited ones (feedback, health) in commits that hold any",
                                           ["router", "writes"], COMMIT_BUCKETS),
        "pending": metrics.gauge("router_pending_decisions", "Decisions waiting for feedback", ["router"]),
        "mean": metrics.gauge("router_posterior_mean", "Posterior mean reward", ["router", "context", "arm"]),
        "lower": metrics.gauge("router_posterior_lower", "Posterior 2.5% quantile of the mean reward",
                               ["router", "context", "arm"]),
        "upper": metrics.gauge("router_posterior_upper", "Posterior 97.5% quantile of the mean reward",
                               ["router", "context", "arm"]),
        "healthy": metrics.gauge("router_arm_healthy", "1 if the arm may get traffic", ["router", "arm"]),
        "rejected": metrics.counter("router_rejected_requests_total", "Requests rejected as bad input",
                                    ["router", "reason"]),
        "fallback": metrics.counter("router_fallback_decisions_total", "Decisions sent to the default arm because "
                                    "the state store was unavailable", ["router", "reason"]),
        "unavailable": metrics.counter("router_store_unavailable_total", "Feedback and health messages answered "
                                       "503 because the state store was unavailable", ["router"]),
    })


class StoreUnavailableError(MLServerError):
    """503: retryable. The message names no store address: clients see it."""

    def __init__(self, what: str, whose: str = "the router's"):
        super().__init__(f"{whose} state store is unavailable; {what}", status_code=UNAVAILABLE)


class BanditRouter(MLModel):
    """Base runtime; subclasses say how a decision's context and arm are chosen."""

    settings_class: type[RouterSettings] = RouterSettings
    clock = staticmethod(time.time)  # epoch seconds; tests inject their own

    @classmethod
    def signature(cls, config: RouterSettings) -> Signature:
        """What ``predict`` takes and answers for these settings, by request kind: a decision answers one tensor
        named after the chosen arm (``one_of`` the configured arms) carrying the ``ohlcv`` input as it came."""
        arms = {**DECISION, "one_of": ",".join(config.arms)}
        return Signature(
            inputs=(TensorSpec("ohlcv", "FP32", WINDOWS, DECISION), *cls.optional_decision_inputs,
                    TensorSpec("decision_id", "BYTES", (-1,), FEEDBACK), TensorSpec("reward", "FP64", (-1,), FEEDBACK),
                    TensorSpec("error", "INT32", (-1,), {**FEEDBACK, **OPTIONAL}),
                    TensorSpec("arm", "BYTES", (-1,), HEALTH), TensorSpec("healthy", "INT32", (-1,), HEALTH)),
            outputs=(*(TensorSpec(arm, "FP32", WINDOWS, arms) for arm in config.arms),
                     TensorSpec("arm", "BYTES", (1,), DECISION), TensorSpec("propensity", "FP64", (1,), DECISION),
                     TensorSpec("decision_id", "BYTES", (1,), DECISION), *cls.own_decision_outputs,
                     TensorSpec(FALLBACK, "BYTES", (1,), {**DECISION, **OPTIONAL}),
                     TensorSpec("status", "BYTES", (-1,), {"request": "feedback,health"})))

    async def load(self) -> bool:
        self.config = self.settings_class.from_extra(extra_of(self._settings), self.name)
        signature = self.signature(self.config)  # before anything starts: an arm named like an output fails here
        self.policy = self.config.policy()
        self._policy_key = self.config.model_dump_json(include={
            "arms", "reward", "prior_alpha", "prior_beta", "prior_mean", "prior_std", "prior_strength", "discount",
            "min_share", "warmup_rewards"})
        self.rng = np.random.default_rng(None if self.config.seed < 0 else self.config.seed)
        self._metrics = _router_metrics()
        for arm in self.config.arms:  # every arm's series from the start: increase() sees the first decisions, and an
            self._metrics["decisions"].labels(self.name, arm)  # arm never chosen is visibly starved
        self._snapshot: Snapshot | None = None
        self._checked = 0.0  # time.monotonic() of the last version check
        self._probabilities: dict = {}  # (state version, context, eligible arms) -> propensities
        self._uncommitted: dict[str, Decision] = {}  # decisions queued for the writer, by id
        self._store_down_until = 0.0  # time.monotonic() until which decisions fall back without the store
        self._health_timer: asyncio.TimerHandle | None = None
        self._read_after_commit = 0  # the writer's commit count when the snapshot was last read after a commit
        self._last_decision = self.clock()  # the writer derives what decisions read while they keep coming
        # State never lives in the model folder: on Seldon that folder is a downloaded artifact.
        self.store = open_store(self.config.store_url(self.name), self.name, self.config.state_path())
        writes = {kind: self._metrics["commit_writes"].labels(self.name, kind) for kind in ("all", "awaited")}
        self.writer = StoreWriter(self.store, derive=self._derive, after_commit=self._publish_pending,
                                  name=f"{self.name}-store-writer", observe=partial(_observe_commit, writes))
        self._next_sweep = self.clock()
        await self._current()
        self._publish_pending()
        serve_signature(self, signature)
        return True

    async def unload(self) -> bool:
        if getattr(self, "_health_timer", None) is not None:
            self._health_timer.cancel()
        if hasattr(self, "writer"):  # load() may have failed before starting it
            self.writer.close()
        if hasattr(self, "store"):
            self.store.close()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        names = {i.name for i in payload.inputs}
        try:
            check_request_id(payload)
            if "reward" in names:
                outputs = await self._feedback(payload)
            elif "healthy" in names:
                outputs = await self._health(payload)
            else:
                outputs = await self._decide(payload)
        except InvalidInput as error:
            self._metrics["rejected"].labels(self.name, error.reason).inc()
            raise
        return InferenceResponse(id=payload.id, model_name=self.name, model_version=self.version, outputs=outputs)

    # state ---------------------------------------------------------------------------------------------------

    async def _current(self, force: bool = False) -> Snapshot:
        """The store's states, health and derived propensities, read again only when they changed. The version
        is checked at most every ``SNAPSHOT_MAX_AGE_SECONDS`` (a read on every decision would cost more than the
        decision), and at once after this worker's own feedback and health messages."""
        checked = time.monotonic()
        if not force and self._snapshot is not None:
            if checked - self._checked < SNAPSHOT_MAX_AGE_SECONDS:
                return self._snapshot
            self._checked = checked
            if await self._read(self.store.version) == self._snapshot.version:
                return self._snapshot
        self._checked = checked  # forced: this worker's own write changed the state, no need to ask
        self._snapshot = await self._read(self.store.snapshot)
        self._publish_state(self._snapshot)
        return self._snapshot

    async def _read(self, read, *args):
        """A store read: inline from a local file (microseconds), else in a thread and within a deadline, so that a
        slow or hung store never holds up the event loop that serves every other model and the health checks."""
        if not self.store.remote:
            return read(*args)
        try:
            return await asyncio.wait_for(asyncio.to_thread(read, *args), STORE_DEADLINE_SECONDS)
        except TimeoutError:
            raise StoreUnavailable(f"no answer within {STORE_DEADLINE_SECONDS} s") from None

    def state(self, stored: dict | None):
        """A context's policy state: the stored statistics, with fresh ones for arms added since."""
        return {**self.policy.initial_state(), **(state_from_dict(stored) if stored else {})}

    def _derive(self, context: str, stored: dict) -> dict | None:
        """What decisions read beside a new state; runs in the writer thread, once per state change, while this
        worker is deciding (a decision in the last ``DERIVE_WHILE_DECIDING_SECONDS``). A stream of feedback alone (a
        day's truth sent in bulk) derives nothing: the next decision derives for itself, once per state."""
        if self.clock() - self._last_decision > DERIVE_WHILE_DECIDING_SECONDS:
            return None
        state = self.state(stored)
        return {"policy": self._policy_key, "probabilities": self.policy.probabilities(state),
                "summary": self.policy.summary(state)}

    def _derived(self, snapshot: Snapshot, context: str) -> dict | None:
        derived = snapshot.derived.get(context)
        return derived if derived and derived["policy"] == self._policy_key else None  # else other settings

    # decisions -----------------------------------------------------------------------------------------------

    optional_inputs: tuple[str, ...] = ()  # decision inputs allowed beside `ohlcv`
    # their metadata, and the outputs a decision has beside the shared ones (`decision_outputs`), for `signature`
    optional_decision_inputs: tuple[TensorSpec, ...] = ()
    own_decision_outputs: tuple[TensorSpec, ...] = ()

    @property
    def min_rows(self) -> int:
        return self.config.min_window

    def choose(self, ohlcv: np.ndarray, payload: InferenceRequest, eligible: tuple[str, ...]):
        """(context, arm, propensity) for one decision."""
        return (WHOLE_ROUTER, *self.thompson(WHOLE_ROUTER, eligible))

    def decision_outputs(self, decision: Decision) -> list:
        """Outputs beside the arm's tensor, ``arm``, ``propensity`` and ``decision_id``."""
        return []

    def context_of(self, ohlcv: np.ndarray, payload: InferenceRequest) -> str:
        """The context a decision would be made in, computed without the store (for a fallback decision)."""
        return WHOLE_ROUTER

    async def _decide(self, payload: InferenceRequest) -> list:
        name, ohlcv = decode_float_tensor(payload, ("ohlcv",), "'ohlcv' FP32 [batch, window, 5] to route, or "
                                          "'decision_id' BYTES [n] with 'reward' FP64 [n] as feedback, or "
                                          "'arm' BYTES [n] with 'healthy' INT32 [n] as a health message",
                                          self.optional_inputs)
        check_prices(check_windows(name, ohlcv, 5, self.min_rows, "open, high, low, close, volume"))
        now = self._last_decision = self.clock()
        decision_id, from_client = self._decision_id(payload)
        fallback = []
        try:
            context, arm, propensity, decision = await self._choose_with_store(ohlcv, payload, now, decision_id,
                                                                                from_client)
        except StoreUnavailable:
            self._metrics["fallback"].labels(self.name, "store_unavailable").inc()
            # Not recorded either: feedback for it will be reported unknown.
            decision = Decision(decision_id, self.context_of(ohlcv, payload), self.config.fallback_arm, 1.0, now)
            fallback = [encode_strings(FALLBACK, ["store_unavailable"])]
        else:
            if decision is None:
                decision = Decision(decision_id, context, arm, float(propensity), now)
                self._record(decision)
                self._metrics["decisions"].labels(self.name, decision.arm).inc()
                if decision.context != WHOLE_ROUTER:
                    self._metrics["regimes"].labels(self.name, decision.context).inc()
            self._sweep_expired(now)
        return [echo_input(payload, name, decision.arm), encode_strings("arm", [decision.arm]),
                encode_tensor("propensity", np.array([decision.propensity], dtype=np.float64)),
                encode_strings("decision_id", [decision.decision_id]), *self.decision_outputs(decision), *fallback]

    async def _choose_with_store(self, ohlcv, payload, now: float, decision_id: str, from_client: bool):
        """(context, arm, propensity, the earlier decision of a retried id or None); ``StoreUnavailable`` when the
        store fails, after which it is left alone for ``STORE_RETRY_SECONDS`` (no request waits on it meanwhile)."""
        if time.monotonic() < self._store_down_until:
            raise StoreUnavailable("failed moments ago")
        try:
            snapshot = await self._current()
            context, arm, propensity = self.choose(ohlcv, payload, self._eligible(now, snapshot))
            earlier = await self._earlier_decision(decision_id) if from_client else None
        except StoreUnavailable as error:
            logger.warning("%s: state store unavailable (%s); decisions go to %r for %s s", self.name, error,
                           self.config.fallback_arm, STORE_RETRY_SECONDS)
            self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
            raise
        return context, arm, propensity, earlier

    async def _earlier_decision(self, decision_id: str) -> Decision | None:
        return self._uncommitted.get(decision_id) or await self._read(self.store.decision, decision_id)

    async def _commit(self, operations: list, what: str) -> list:
        """Apply writes and wait for their commit, within a deadline; a store outage is a retryable 503."""
        try:
            results = await self.writer.commit_within(STORE_DEADLINE_SECONDS, *operations)
        except StoreUnavailable as error:
            logger.warning("%s: state store unavailable for %s (%s)", self.name, what, error)
            self._metrics["unavailable"].labels(self.name).inc()
            raise StoreUnavailableError(f"the {what} may not have been applied: send it again (a repeated "
                                        "decision_id and reward counts once)") from None
        commits = self.writer.commits
        if self._read_after_commit < commits:  # the first of the requests that shared a commit reads the new state
            self._read_after_commit = commits
            try:
                await self._current(force=True)
            except StoreUnavailable:  # committed; the next decision reads the new state
                pass
        return results

    def _record(self, decision: Decision) -> None:
        """Queue the decision for the next group commit; the reply does not wait for it."""
        self._uncommitted[decision.decision_id] = decision
        self.writer.submit(RecordDecision(decision)).add_done_callback(partial(self._recorded, decision))

    def _recorded(self, decision: Decision, future: Future) -> None:
        self._uncommitted.pop(decision.decision_id, None)
        if future.exception() is not None:
            logger.error("%s: decision %r was not stored (%s); feedback for it will be reported unknown",
                         self.name, decision.decision_id, future.exception())

    def _sweep_expired(self, now: float) -> None:
        """Forget decisions older than their time-to-live, at most every ``EXPIRY_SWEEP_SECONDS``."""
        if now >= self._next_sweep:
            self.writer.submit(Expire(now, self.config.decision_ttl_seconds))
            self._next_sweep = now + EXPIRY_SWEEP_SECONDS

    def thompson(self, context: str, eligible: tuple[str, ...]) -> tuple[str, float]:
        """Thompson sampling with the shared posterior of ``context``, among ``eligible`` arms."""
        snapshot = self._snapshot
        key = (snapshot.version, context, eligible)
        probabilities = self._probabilities.get(key)
        if probabilities is None:
            derived = self._derived(snapshot, context)
            if derived is not None and eligible == self.config.arms:
                probabilities = derived["probabilities"]
            else:  # an arm is out, or nothing was derived yet for these settings
                probabilities = self.policy.probabilities(self.state(snapshot.states.get(context)), eligible)
            if len(self._probabilities) > 64:  # only the current version matters; keep the cache small
                self._probabilities.clear()
            self._probabilities[key] = probabilities
        return draw(probabilities, self.rng)

    @staticmethod
    def _decision_id(payload: InferenceRequest) -> tuple[str, bool]:
        """The request id, else Seldon's ``x-request-id`` header, else a new UUID; and whether the client gave it."""
        given = payload.id or request_headers(payload).get("x-request-id")
        if given and not REQUEST_ID.fullmatch(given):  # (the request id itself was checked already)
            raise InvalidInput(f"x-request-id header {ascii(given[:40])} must be {REQUEST_ID_RULE}",
                               "invalid_request_id")
        return (given, True) if given else (str(uuid.uuid4()), False)

    # health --------------------------------------------------------------------------------------------------

    def _eligible(self, now: float, snapshot: Snapshot) -> tuple[str, ...]:
        healthy = tuple(a for a in self.config.arms if snapshot.health.get(a, ArmHealth()).healthy(now))
        return healthy or (self.config.fallback_arm,)

    async def _health(self, payload: InferenceRequest) -> list:
        arms = decode_strings(payload, "arm", "unknown_arm")
        healthy = decode_numbers(payload, "healthy", ("BOOL", "INT32", "INT64"), len(arms))
        unknown = sorted(set(arms) - set(self.config.arms))
        if unknown:
            raise InvalidInput(f"unknown arms {unknown}; arms are {list(self.config.arms)}", "unknown_arm")
        await self._commit([UpdateHealth(arm, lambda h, ok=bool(ok): ArmHealth() if ok else
                                         replace(h, unhealthy_until=math.inf))
                            for arm, ok in zip(arms, healthy, strict=True)], "health message")
        return [encode_strings("status", ["healthy" if ok else "unhealthy" for ok in healthy])]

    def _health_after(self, error: bool, now: float):
        """How an applied reward changes its arm's health (``max_consecutive_errors`` errors: a cooldown)."""
        def update(health: ArmHealth) -> ArmHealth:
            if not error:  # a success ends an error streak, but not a cooldown or a health message
                ends_streak = health.consecutive_errors and health.healthy(now)
                return replace(health, consecutive_errors=0) if ends_streak else health
            errors = health.consecutive_errors + 1
            if errors >= self.config.max_consecutive_errors:
                return ArmHealth(errors, max(health.unhealthy_until, now + self.config.unhealthy_cooldown_seconds))
            return replace(health, consecutive_errors=errors)

        return update

    # feedback ------------------------------------------------------------------------------------------------

    async def _feedback(self, payload: InferenceRequest) -> list:
        ids = decode_strings(payload, "decision_id", "invalid_decision_id")
        malformed = [decision_id for decision_id in ids if not REQUEST_ID.fullmatch(decision_id)]
        if malformed:  # no such decision can exist: decision ids are request ids
            raise InvalidInput(f"input 'decision_id' holds {ascii(malformed[0][:40])}; decision ids are request ids: "
                               f"{REQUEST_ID_RULE}", "invalid_decision_id")
        try:
            rewards = np.asarray(decode_numbers(payload, "reward", ("FP64", "FP32"), len(ids)), dtype=np.float64)
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
        ttl = self.config.decision_ttl_seconds
        results = await self._commit([
            ApplyFeedback(decision_id, float(reward), now, ttl, partial(self._updated_state, reward=float(reward)),
                          self._health_after(bool(error), now))
            for decision_id, reward, error in zip(ids, rewards, errors, strict=True)], "feedback")
        statuses = []
        for (outcome, decision), reward in zip(results, rewards, strict=True):
            self._metrics["feedback"].labels(self.name, outcome.value).inc()
            if outcome is FeedbackOutcome.APPLIED:
                self._metrics["reward"].labels(self.name, decision.arm).observe(float(reward))
                self._metrics["delay"].labels(self.name).observe(now - decision.created)
            statuses.append(outcome.value)
        return [encode_strings("status", statuses)]

    def _updated_state(self, stored: dict | None, decision: Decision, reward: float) -> dict:
        state = self.state(stored)
        state.setdefault(decision.arm, ArmStats())  # decided before the arm was removed from the settings
        return state_to_dict(self.policy.update(state, decision.arm, reward))

    # metrics -------------------------------------------------------------------------------------------------

    def _publish_state(self, snapshot: Snapshot) -> None:
        for context, stored in snapshot.states.items():
            derived = self._derived(snapshot, context)
            summary = derived["summary"] if derived else self.policy.summary(self.state(stored))
            for arm, (mean, low, high) in summary.items():
                self._metrics["mean"].labels(self.name, context, arm).set(mean)
                self._metrics["lower"].labels(self.name, context, arm).set(low)
                self._metrics["upper"].labels(self.name, context, arm).set(high)
        self._publish_health()

    def _publish_health(self) -> None:
        """The health gauge, and a call back when the next cooldown ends, so that the gauge is right at every
        scrape even when no request comes to refresh it."""
        now = self.clock()
        eligible = self._eligible(now, self._snapshot)
        for arm in self.config.arms:
            self._metrics["healthy"].labels(self.name, arm).set(1.0 if arm in eligible else 0.0)
        ends = [h.unhealthy_until for h in self._snapshot.health.values() if now < h.unhealthy_until < math.inf]
        if self._health_timer is not None:
            self._health_timer.cancel()
            self._health_timer = None
        if ends:
            self._health_timer = asyncio.get_running_loop().call_later(min(ends) - now + 0.01, self._publish_health)

    def _publish_pending(self) -> None:
        """After each commit (in the writer thread): the decisions waiting for feedback, from the store."""
        self._metrics["pending"].labels(self.name).set(self.store.pending_count())
