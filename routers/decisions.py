"""Decisions: ``ohlcv`` FP32 [batch, window, 5] -> one output named after the chosen arm carrying the input
unchanged, plus ``arm`` BYTES [1], ``propensity`` FP64 [1] and ``decision_id`` BYTES [1].

One decision per request. A decision reads the store's snapshot and never waits for a write: its record is queued
for the writer's next group commit. When the store fails it goes to the default arm, unrecorded, with a
``fallback`` output saying why.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future
from functools import partial

import numpy as np
from mlserver.types import InferenceRequest

from seldon_market_ab.metadata import TensorSpec
from seldon_market_ab.mlserver_compat import request_headers
from seldon_market_ab.protocol import (
    REQUEST_ID,
    REQUEST_ID_RULE,
    InvalidInput,
    check_prices,
    check_windows,
    decode_float_tensor,
    echo_input,
    encode_strings,
    encode_tensor,
)

from .bandit import draw
from .health import eligible_arms
from .state import EXPIRY_SWEEP_SECONDS, RouterState
from .stores import Decision, Expire, RecordDecision, StoreUnavailableError

logger = logging.getLogger(__name__)

WHOLE_ROUTER = "all"  # the context of a router without contexts
FALLBACK = "fallback"  # output of a decision made without the store: the reason
STORE_RETRY_SECONDS = 1.0  # after a store failure, decisions fall back without asking the store for this long
CACHED_PROBABILITIES = 64  # only the current state version's matter; the cache is cleared beyond this
EXPECTED = ("'ohlcv' FP32 [batch, window, 5] to route, or 'decision_id' BYTES [n] with 'reward' FP64 [n] as "
            "feedback, or 'arm' BYTES [n] with 'healthy' INT32 [n] as a health message")  # every request kind


def decision_id_of(payload: InferenceRequest) -> tuple[str, bool]:
    """The request id, else Seldon's ``x-request-id`` header, else a new UUID; and whether the client gave it."""
    given = payload.id or request_headers(payload).get("x-request-id")
    if given and not REQUEST_ID.fullmatch(given):  # (the request id itself was checked already)
        raise InvalidInput(f"x-request-id header {ascii(given[:40])} must be {REQUEST_ID_RULE}", "invalid_request_id")
    return (given, True) if given else (str(uuid.uuid4()), False)


class Decisions:
    """Thompson sampling among the healthy arms with the whole router's posterior. A router that decides otherwise
    subclasses it (``regime.RegimeDecisions``) and overrides the methods above ``answer``."""

    optional_inputs: tuple[TensorSpec, ...] = ()  # decision inputs allowed beside ``ohlcv``
    own_outputs: tuple[TensorSpec, ...] = ()  # what ``decision_outputs`` adds to every decision

    def __init__(self, state: RouterState):
        self.state, self.config = state, state.config
        self.rng = np.random.default_rng(None if self.config.seed < 0 else self.config.seed)
        self._optional = tuple(spec.name for spec in self.optional_inputs)
        self._probabilities: dict = {}  # (state version, context, eligible arms) -> propensities
        self._uncommitted: dict[str, Decision] = {}  # decisions queued for the writer, by id
        self._store_down_until = 0.0  # time.monotonic() until which decisions fall back without the store
        self._next_sweep = state.clock()
        for arm in self.config.arms:  # every arm's series from the start: increase() sees the first decisions, and an
            state.metrics["decisions"].labels(state.name, arm)  # arm never chosen is visibly starved

    @property
    def min_rows(self) -> int:
        return self.config.min_window

    def choose(self, ohlcv: np.ndarray, payload: InferenceRequest, eligible: tuple[str, ...]):
        """(context, arm, propensity) for one decision."""
        return (WHOLE_ROUTER, *self.thompson(WHOLE_ROUTER, eligible))

    def context_of(self, ohlcv: np.ndarray, payload: InferenceRequest) -> str:
        """The context a decision would be made in, computed without the store (for a fallback decision)."""
        return WHOLE_ROUTER

    def decision_outputs(self, decision: Decision) -> list:
        """Outputs beside the arm's tensor, ``arm``, ``propensity`` and ``decision_id`` (``own_outputs``)."""
        return []

    async def answer(self, payload: InferenceRequest) -> list:
        name, ohlcv = decode_float_tensor(payload, ("ohlcv",), EXPECTED, self._optional)
        check_prices(check_windows(name, ohlcv, 5, self.min_rows, "open, high, low, close, volume"))
        state = self.state
        now = state.last_decision = state.clock()
        decision_id, from_client = decision_id_of(payload)
        fallback = []
        try:
            context, arm, propensity, decision = await self._choose_with_store(ohlcv, payload, now, decision_id,
                                                                                from_client)
        except StoreUnavailableError:
            state.metrics["fallback"].labels(state.name, "store_unavailable").inc()
            # Not recorded either: feedback for it will be reported unknown.
            decision = Decision(decision_id, self.context_of(ohlcv, payload), self.config.fallback_arm, 1.0, now)
            fallback = [encode_strings(FALLBACK, ["store_unavailable"])]
        else:
            if decision is None:
                decision = Decision(decision_id, context, arm, float(propensity), now)
                self._record(decision)
                state.metrics["decisions"].labels(state.name, decision.arm).inc()
                if decision.context != WHOLE_ROUTER:
                    state.metrics["regimes"].labels(state.name, decision.context).inc()
            self._sweep_expired(now)
        return [echo_input(payload, name, decision.arm), encode_strings("arm", [decision.arm]),
                encode_tensor("propensity", np.array([decision.propensity], dtype=np.float64)),
                encode_strings("decision_id", [decision.decision_id]), *self.decision_outputs(decision), *fallback]

    def thompson(self, context: str, eligible: tuple[str, ...]) -> tuple[str, float]:
        """Thompson sampling with the shared posterior of ``context``, among ``eligible`` arms."""
        snapshot = self.state.snapshot
        key = (snapshot.version, context, eligible)
        probabilities = self._probabilities.get(key)
        if probabilities is None:
            derived = self.state.derived(snapshot, context)
            if derived is not None and eligible == self.config.arms:
                probabilities = derived["probabilities"]
            else:  # an arm is out, or nothing was derived yet for these settings
                stored = self.state.policy_state(snapshot.states.get(context))
                probabilities = self.state.policy.probabilities(stored, eligible)
            if len(self._probabilities) > CACHED_PROBABILITIES:
                self._probabilities.clear()
            self._probabilities[key] = probabilities
        return draw(probabilities, self.rng)

    async def _choose_with_store(self, ohlcv, payload, now: float, decision_id: str, from_client: bool):
        """(context, arm, propensity, the earlier decision of a retried id or None); ``StoreUnavailableError`` when
        the store fails, after which it is left alone for ``STORE_RETRY_SECONDS`` (no request waits on it
        meanwhile)."""
        if time.monotonic() < self._store_down_until:
            raise StoreUnavailableError("failed moments ago")
        try:
            snapshot = await self.state.current()
            context, arm, propensity = self.choose(ohlcv, payload, eligible_arms(self.config, snapshot, now))
            earlier = await self._earlier_decision(decision_id) if from_client else None
        except StoreUnavailableError as error:
            logger.warning("%s: state store unavailable (%s); decisions go to %r for %s s", self.state.name, error,
                           self.config.fallback_arm, STORE_RETRY_SECONDS)
            self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
            raise
        return context, arm, propensity, earlier

    async def _earlier_decision(self, decision_id: str) -> Decision | None:
        return self._uncommitted.get(decision_id) or await self.state.read(self.state.store.decision, decision_id)

    def _record(self, decision: Decision) -> None:
        """Queue the decision for the next group commit; the reply does not wait for it."""
        self._uncommitted[decision.decision_id] = decision
        self.state.writer.submit(RecordDecision(decision)).add_done_callback(partial(self._recorded, decision))

    def _recorded(self, decision: Decision, future: Future) -> None:
        self._uncommitted.pop(decision.decision_id, None)
        if future.exception() is not None:
            logger.error("%s: decision %r was not stored (%s); feedback for it will be reported unknown",
                         self.state.name, decision.decision_id, future.exception())

    def _sweep_expired(self, now: float) -> None:
        """Forget decisions older than their time-to-live, at most every ``EXPIRY_SWEEP_SECONDS``."""
        if now >= self._next_sweep:
            self.state.writer.submit(Expire(now, self.config.decision_ttl_seconds))
            self._next_sweep = now + EXPIRY_SWEEP_SECONDS
