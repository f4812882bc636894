"""Router state: one interface, two implementations (``sqlite_store``, ``redis_store``).

A store keeps, per router (its namespace): the policy state of every context (the
whole router, or one regime), the pending and answered decisions, arm health and
counters. Feedback is applied in one atomic step: look the decision up, update the
policy state of its context, mark the decision answered. The store commits before the
router answers, so acknowledged feedback survives a restart or a SIGKILL.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path


class FeedbackOutcome(StrEnum):
    APPLIED = "applied"  # the reward updated the posterior
    DUPLICATE = "duplicate"  # same decision id and reward seen before: counted once
    CONFLICT = "conflict"  # the decision was already rewarded with another value: ignored
    UNKNOWN = "unknown"  # no such decision (never made, or forgotten after its time-to-live)
    EXPIRED = "expired"  # the decision is older than its time-to-live


@dataclass(frozen=True)
class Decision:
    decision_id: str
    context: str
    arm: str
    propensity: float
    created: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

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


class StateStore(ABC):
    @abstractmethod
    def load_states(self) -> dict[str, dict]:
        """Policy state (JSON-able) of every context that has one."""

    @abstractmethod
    def record_decision(self, decision: Decision) -> Decision:
        """Keep a pending decision and count it. A decision id seen before keeps its first decision,
        which is returned (so a retried request gets the arm it got the first time)."""

    @abstractmethod
    def apply_feedback(self, decision_id: str, reward: float, now: float, ttl: float,
                       update: StateUpdate) -> tuple[FeedbackOutcome, Decision | None]:
        """Atomically apply one reward; idempotent for a repeated (decision id, reward)."""

    @abstractmethod
    def decision(self, decision_id: str) -> Decision | None:
        """A pending or answered decision, if still kept."""

    @abstractmethod
    def pending_count(self) -> int: ...

    @abstractmethod
    def expire(self, now: float, ttl: float) -> int:
        """Forget decisions (pending or answered) older than ``ttl`` seconds; returns how many."""

    @abstractmethod
    def load_health(self) -> dict[str, ArmHealth]: ...

    @abstractmethod
    def update_health(self, arm: str, update: Callable[[ArmHealth], ArmHealth]) -> ArmHealth: ...

    @abstractmethod
    def counters(self) -> dict[str, float]:
        """``decisions:<arm>`` and ``feedback:<outcome>`` counts."""

    @abstractmethod
    def close(self) -> None: ...


STORE_SCHEMES = ("sqlite:///", "redis://", "rediss://", "unix://")


def open_store(url: str, namespace: str, base_dir: str | Path = ".") -> StateStore:
    """``sqlite:///relative.db`` (relative to ``base_dir``, the router's state directory),
    ``sqlite:////absolute/path.db`` or ``redis://host:port/db``."""
    if url.startswith("sqlite:///"):
        from .sqlite_store import SQLiteStore

        path = Path(url[len("sqlite:///"):])
        return SQLiteStore(path if path.is_absolute() else Path(base_dir) / path, namespace)
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from .redis_store import RedisStore
        except ImportError as error:  # the optional dependency is missing
            raise ImportError(f"store {url.split('://')[0]}:// needs the redis client: "
                              "pip install 'seldon-market-ab[redis]'") from error
        return RedisStore(url, namespace)
    raise ValueError(f"unknown store {url!r}; expected sqlite:///path.db or redis://host:port/db")
