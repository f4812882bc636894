"""Delayed feedback: ``decision_id`` BYTES [n] and ``reward`` FP64 [n] (optional ``error`` INT32/BOOL [n]: the arm
failed on that decision) -> ``status`` BYTES [n], one ``FeedbackOutcome`` per id.

Each reward is applied in one atomic store step (find the decision, update its context's policy state, mark it
answered) and committed before the answer, so an acknowledged reward is durable; a repeated (id, reward) counts once.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from mlserver.types import InferenceRequest

from seldon_market_ab.protocol import (
    REQUEST_ID,
    REQUEST_ID_RULE,
    InvalidInput,
    decode_numbers,
    decode_strings,
    encode_strings,
)

from .bandit import ArmStats, state_to_dict
from .health import after_reward
from .state import RouterState
from .stores import ApplyFeedback, Decision, FeedbackOutcome


class Feedback:
    def __init__(self, state: RouterState):
        self.state = state

    async def answer(self, payload: InferenceRequest) -> list:
        state = self.state
        ids, rewards, errors = self._decode(payload)
        now = state.clock()
        results = await state.commit([
            ApplyFeedback(decision_id, float(reward), now, state.config.decision_ttl_seconds,
                          partial(self._updated_state, reward=float(reward)), after_reward(state.config, error, now))
            for decision_id, reward, error in zip(ids, rewards, errors, strict=True)], "feedback")
        statuses = []
        for (outcome, decision), reward in zip(results, rewards, strict=True):
            state.metrics["feedback"].labels(state.name, outcome.value).inc()
            if outcome is FeedbackOutcome.APPLIED:
                state.metrics["reward"].labels(state.name, decision.arm).observe(float(reward))
                state.metrics["delay"].labels(state.name).observe(now - decision.created)
            statuses.append(outcome.value)
        return [encode_strings("status", statuses)]

    def _decode(self, payload: InferenceRequest) -> tuple[list[str], np.ndarray, list[bool]]:
        """Ids, rewards and error flags, every reward checked by the policy before any is applied."""
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
                self.state.policy.check_reward(float(reward))
            except ValueError as error:
                raise InvalidInput(f"input 'reward': {error}", "invalid_reward") from None
        return ids, rewards, [bool(error) for error in errors]

    def _updated_state(self, stored: dict | None, decision: Decision, reward: float) -> dict:
        """In the writer thread, inside the feedback's store step: the decision's context's new policy state."""
        state = self.state.policy_state(stored)
        state.setdefault(decision.arm, ArmStats())  # decided before the arm was removed from the settings
        return state_to_dict(self.state.policy.update(state, decision.arm, reward))
