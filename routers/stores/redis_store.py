"""Redis store, for routers with several replicas. Feedback and health changes are optimistic
transactions (WATCH / MULTI / EXEC, retried on conflict), so concurrent replicas never lose an update.
Durability is Redis's own: run it with ``appendonly yes`` (and ``appendfsync always`` to survive a
machine crash, not just a router crash)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict

import redis

from .base import ArmHealth, Decision, FeedbackOutcome, StateStore, StateUpdate

logger = logging.getLogger(__name__)


class RedisStore(StateStore):
    def __init__(self, url: str, namespace: str):
        self.namespace = namespace
        self._redis = redis.Redis.from_url(url)
        self._redis.ping()
        try:
            if self._redis.config_get("appendonly").get("appendonly") != "yes":
                logger.warning("Redis at %s runs without appendonly: acknowledged feedback is lost if Redis "
                               "restarts. Set `appendonly yes`.", url)
        except redis.ResponseError:  # managed Redis services may refuse CONFIG; their durability is theirs
            pass

    def _key(self, *parts: str) -> str:
        return ":".join(("market-ab", self.namespace, *parts))

    def load_states(self) -> dict[str, dict]:
        raw = self._redis.hgetall(self._key("state"))
        return {context.decode(): json.loads(state) for context, state in raw.items()}

    def record_decision(self, decision: Decision) -> Decision:
        key = self._key("decision", decision.decision_id)
        result: dict = {}

        def transaction(pipe: redis.client.Pipeline) -> None:
            existing = pipe.hget(key, "decision")
            result["decision"] = Decision.from_json(existing) if existing else decision
            pipe.multi()
            if existing is None:
                pipe.hset(key, "decision", decision.to_json())
                pipe.zadd(self._key("pending"), {decision.decision_id: decision.created})
                pipe.zadd(self._key("created"), {decision.decision_id: decision.created})
                pipe.hincrbyfloat(self._key("counters"), f"decisions:{decision.arm}", 1)

        self._redis.transaction(transaction, key)
        return result["decision"]

    def apply_feedback(self, decision_id: str, reward: float, now: float, ttl: float,
                       update: StateUpdate) -> tuple[FeedbackOutcome, Decision | None]:
        decision_key, state_key = self._key("decision", decision_id), self._key("state")
        result: dict = {}

        def transaction(pipe: redis.client.Pipeline) -> None:
            record = pipe.hgetall(decision_key)
            decision = Decision.from_json(record[b"decision"]) if record else None
            outcome = FeedbackOutcome.APPLIED
            if decision is None:
                outcome = FeedbackOutcome.UNKNOWN
            elif b"reward" in record:
                same = float(record[b"reward"]) == reward
                outcome = FeedbackOutcome.DUPLICATE if same else FeedbackOutcome.CONFLICT
            elif now - decision.created > ttl:
                outcome = FeedbackOutcome.EXPIRED
            new_state = None
            if outcome is FeedbackOutcome.APPLIED:
                state = pipe.hget(state_key, decision.context)
                new_state = update(json.loads(state) if state else None, decision)
            pipe.multi()
            if new_state is not None:
                pipe.hset(state_key, decision.context, json.dumps(new_state))
                pipe.hset(decision_key, "reward", repr(reward))
                pipe.zrem(self._key("pending"), decision_id)
            pipe.hincrbyfloat(self._key("counters"), f"feedback:{outcome.value}", 1)
            result.update(outcome=outcome, decision=decision)

        self._redis.transaction(transaction, decision_key, state_key)
        return result["outcome"], result["decision"]

    def decision(self, decision_id: str) -> Decision | None:
        text = self._redis.hget(self._key("decision", decision_id), "decision")
        return Decision.from_json(text) if text else None

    def pending_count(self) -> int:
        return int(self._redis.zcard(self._key("pending")))

    def expire(self, now: float, ttl: float) -> int:
        old = self._redis.zrangebyscore(self._key("created"), "-inf", now - ttl)
        if not old:
            return 0
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(self._key("decision", d.decode()) for d in old))
            pipe.zrem(self._key("pending"), *old)
            pipe.zrem(self._key("created"), *old)
            pipe.execute()
        return len(old)

    def load_health(self) -> dict[str, ArmHealth]:
        raw = self._redis.hgetall(self._key("health"))
        return {arm.decode(): ArmHealth(**json.loads(text)) for arm, text in raw.items()}

    def update_health(self, arm: str, update: Callable[[ArmHealth], ArmHealth]) -> ArmHealth:
        key = self._key("health")
        result: dict = {}

        def transaction(pipe: redis.client.Pipeline) -> None:
            text = pipe.hget(key, arm)
            health = update(ArmHealth(**json.loads(text)) if text else ArmHealth())
            pipe.multi()
            pipe.hset(key, arm, json.dumps(asdict(health)))
            result["health"] = health

        self._redis.transaction(transaction, key)
        return result["health"]

    def counters(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self._redis.hgetall(self._key("counters")).items()}

    def close(self) -> None:
        self._redis.close()
