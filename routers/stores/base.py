"""Router state and outcomes: one interface, two implementations (``sqlite_store``, ``redis_store``).

A store keeps, per router (its namespace): the policy state of every context (the
whole router, or one regime), the pending and answered decisions, arm health and
counters; per outcomes model (``seldon_market_ab.routers.outcomes``), the outcome of each answered
request and per-arm counters. Feedback is applied in one atomic step: look the
decision up, update the policy state of its context, mark the decision answered.
Writes are operations that a writer thread applies many at a time
(``writer.StoreWriter``); feedback and outcomes are committed before the model
answers, so what was acknowledged survives a restart or a SIGKILL.
"""

from __future__ import annotations

import functools
import json
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class StoreUnavailableError(Exception):
    """The store could not be read or written (down, hung, locked): retryable. Stores raise this in place of their
    backend's errors, so that routers need not know the backend."""


def translate_errors(*backend_errors: type[Exception]):
    """Method decorator: the backend's ``backend_errors`` become ``StoreUnavailableError`` (the original chained)."""
    def decorator(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except backend_errors as error:
                raise StoreUnavailableError(f"{type(error).__name__}: {error}") from error
        return wrapper
    return decorator


class FeedbackOutcome(StrEnum):
    APPLIED = "applied"  # the reward updated the posterior
    DUPLICATE = "duplicate"  # same decision id and reward seen before: counted once
    CONFLICT = "conflict"  # the decision was already rewarded with another value: ignored
    UNKNOWN = "unknown"  # no such decision (never made, or forgotten after its time-to-live)
    EXPIRED = "expired"  # the decision is older than its time-to-live


class OutcomeStatus(StrEnum):
    RECORDED = "recorded"  # kept and counted
    DUPLICATE = "duplicate"  # same request id, same values: counted once
    CONFLICT = "conflict"  # same request id, other values: the first stands
    UNKNOWN_MODEL = "unknown_model"  # not one of the configured arms: not kept (decided before the store)


@dataclass(frozen=True)
class Outcome:
    """The truth about one answered request: was the predicted direction right, and what the strategy returned."""

    request_id: str
    model: str  # the configured arm that answered
    correct: bool
    strategy_return: float | None
    created: float

    def same_values(self, other: Outcome) -> bool:
        return (self.model, self.correct, self.strategy_return) == (other.model, other.correct, other.strategy_return)

    def counts(self) -> dict[str, float]:
        """What recording it adds to the store's counters."""
        counts = {f"outcomes:{self.model}": 1.0, f"outcomes_correct:{self.model}": float(self.correct)}
        if self.strategy_return is not None:
            counts[f"outcome_return:{self.model}"] = self.strategy_return
        return counts

    def to_json(self) -> str:
        return json.dumps({"request_id": self.request_id, "model": self.model, "correct": self.correct,
                           "strategy_return": self.strategy_return, "created": self.created})

    @classmethod
    def from_json(cls, text: str | bytes) -> Outcome:
        return cls(**json.loads(text))


def outcome_status(kept: Outcome | None, outcome: Outcome) -> OutcomeStatus:
    """What recording ``outcome`` does, given the outcome its request id already has (if any)."""
    if kept is None:
        return OutcomeStatus.RECORDED
    return OutcomeStatus.DUPLICATE if kept.same_values(outcome) else OutcomeStatus.CONFLICT


@dataclass(frozen=True)
class Decision:
    decision_id: str
    context: str
    arm: str
    propensity: float
    created: float

    def to_json(self) -> str:
        return json.dumps({"decision_id": self.decision_id, "context": self.context, "arm": self.arm,
                           "propensity": self.propensity, "created": self.created})

    @classmethod
    def from_json(cls, text: str | bytes) -> Decision:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ArmHealth:
    consecutive_errors: int = 0
    unhealthy_until: float = 0.0  # epoch seconds; inf while marked unhealthy by a health message

    def healthy(self, now: float) -> bool:
        return now >= self.unhealthy_until


# update(policy state of the decision's context or None, decision) -> new policy state
StateUpdate = Callable[[dict | None, Decision], dict]
HealthUpdate = Callable[[ArmHealth], ArmHealth]
# derive(context, new policy state) -> what decisions read beside it (propensities, posterior summary), or None when
# nobody will read it (decisions then derive for themselves, once per state)
Derive = Callable[[str, dict], dict | None]


@dataclass(frozen=True)
class Snapshot:
    """What a decision reads, in one consistent read."""

    version: int  # changes whenever a policy state or an arm's health changes, in any process
    states: dict[str, dict]  # context -> policy state
    derived: dict[str, dict]  # context -> derive(state), only where it was derived from the current state
    health: dict[str, ArmHealth]


# Writes. Each is one atomic step; the writer thread applies many in one transaction (``apply_batch``).

@dataclass(frozen=True)
class RecordDecision:
    """Keep a pending decision and count it; a decision id seen before keeps its first decision (the result)."""

    decision: Decision


@dataclass(frozen=True)
class ApplyFeedback:
    """Apply one reward, idempotently for a repeated (decision id, reward); result ``(outcome, decision)``.
    ``health`` updates the decided arm's health in the same step when the reward is applied."""

    decision_id: str
    reward: float
    now: float
    ttl: float
    update: StateUpdate
    health: HealthUpdate | None = None


@dataclass(frozen=True)
class UpdateHealth:
    arm: str
    update: HealthUpdate


@dataclass(frozen=True)
class RecordOutcome:
    """Keep an outcome and count it, once per request id; the result is its ``OutcomeStatus``."""

    outcome: Outcome


@dataclass(frozen=True)
class Expire:
    """Forget decisions (pending or answered) and outcomes older than ``ttl`` seconds; the result is how many."""

    now: float
    ttl: float


Operation = RecordDecision | ApplyFeedback | UpdateHealth | RecordOutcome | Expire


def state_checksum(text: str | bytes) -> int:
    """Ties a derived entry to the exact state it was derived from."""
    return zlib.crc32(text.encode() if isinstance(text, str) else text)


class StateStore(ABC):
    """Per router (its namespace): policy state per context (the whole router, or one regime) with what was
    derived from it, pending and answered decisions, arm health and counters."""

    remote = False  # True when a read is a network round trip (it then runs in a thread, within a deadline)

    @abstractmethod
    def snapshot(self) -> Snapshot: ...

    @abstractmethod
    def version(self) -> int:
        """Cheap: tells whether ``snapshot()`` would read anything new."""

    @abstractmethod
    def decision(self, decision_id: str) -> Decision | None:
        """A pending or answered decision, if still kept."""

    @abstractmethod
    def outcome(self, request_id: str) -> Outcome | None:
        """A recorded outcome, if still kept."""

    @abstractmethod
    def pending_count(self) -> int: ...

    @abstractmethod
    def counters(self) -> dict[str, float]:
        """``decisions:<arm>`` and ``feedback:<outcome>`` counts; for outcomes ``outcomes:<model>``,
        ``outcomes_correct:<model>`` and ``outcome_return:<model>`` (the sum of returns)."""

    @abstractmethod
    def apply_batch(self, operations: list[Operation], derive: Derive | None = None) -> list:
        """Apply ``operations`` in order and return each one's result, or the exception it raised (which
        undoes that operation only). ``derive`` runs once for every context whose state changed."""

    @abstractmethod
    def close(self) -> None: ...

    # One operation at a time (tests, tools): each is its own transaction.

    def apply(self, operation: Operation, derive: Derive | None = None):
        (result,) = self.apply_batch([operation], derive)
        if isinstance(result, BaseException):
            raise result
        return result

    def record_decision(self, decision: Decision) -> Decision:
        return self.apply(RecordDecision(decision))

    def apply_feedback(self, decision_id: str, reward: float, now: float, ttl: float,
                       update: StateUpdate) -> tuple[FeedbackOutcome, Decision | None]:
        return self.apply(ApplyFeedback(decision_id, reward, now, ttl, update))

    def update_health(self, arm: str, update: HealthUpdate) -> ArmHealth:
        return self.apply(UpdateHealth(arm, update))

    def expire(self, now: float, ttl: float) -> int:
        return self.apply(Expire(now, ttl))

    def load_states(self) -> dict[str, dict]:
        return self.snapshot().states

    def load_health(self) -> dict[str, ArmHealth]:
        return self.snapshot().health


def feedback_outcome(decision: Decision | None, previous_reward: float | None, reward: float, now: float,
                     ttl: float) -> FeedbackOutcome:
    """What a reward for ``decision`` does, given the reward it already had (if any)."""
    if decision is None:
        return FeedbackOutcome.UNKNOWN
    if previous_reward is not None:
        return FeedbackOutcome.DUPLICATE if previous_reward == reward else FeedbackOutcome.CONFLICT
    if now - decision.created > ttl:
        return FeedbackOutcome.EXPIRED
    return FeedbackOutcome.APPLIED

