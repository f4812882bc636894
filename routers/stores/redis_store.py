"""Redis store, for routers with several replicas. Feedback and health changes are optimistic
transactions (WATCH / MULTI / EXEC, retried on conflict), so concurrent replicas never lose an update.
Durability is Redis's own: run it with ``appendonly yes`` (and ``appendfsync always`` to survive a
machine crash, not just a router crash). A batch is its operations one after another: Redis already
shares one fsync among the writes of all its clients."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import redis

from .base import (
    ApplyFeedback,
    ArmHealth,
    Decision,
    Derive,
    Expire,
    FeedbackOutcome,
    Operation,
    Outcome,
    OutcomeStatus,
    RecordDecision,
    RecordOutcome,
    Snapshot,
    StateStore,
    StoreUnavailableError,
    UpdateHealth,
    feedback_outcome,
    outcome_status,
    state_checksum,
    translate_errors,
)

logger = logging.getLogger(__name__)


class RedisStore(StateStore):
    remote = True

    def __init__(self, url: str, namespace: str, timeout: float = 2.0):
        self.namespace = namespace
        # A hung Redis must fail a call, not hold a thread forever.
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._redis.ping()
        try:
            if self._redis.config_get("appendonly").get("appendonly") != "yes":
                logger.warning("Redis at %s runs without appendonly: acknowledged feedback is lost if Redis "
                               "restarts. Set `appendonly yes`.", url)
        except redis.ResponseError:  # managed Redis services may refuse CONFIG; their durability is theirs
            pass

    def _key(self, *parts: str) -> str:
        return ":".join(("market-ab", self.namespace, *parts))

    # reads ---------------------------------------------------------------------------------------------------

    @translate_errors(redis.RedisError)
    def version(self) -> int:
        return int(float(self._redis.hget(self._key("counters"), "version") or 0))

    @translate_errors(redis.RedisError)
    def snapshot(self) -> Snapshot:
        with self._redis.pipeline(transaction=True) as pipe:  # MULTI: one consistent read
            pipe.hget(self._key("counters"), "version")
            pipe.hgetall(self._key("state"))
            pipe.hgetall(self._key("derived"))
            pipe.hgetall(self._key("health"))
            version, states, derived, health = pipe.execute()
        out_states, out_derived = {}, {}
        for context, state in states.items():
            out_states[context.decode()] = json.loads(state)
            extra = derived.get(context)
            if extra and json.loads(extra).get("state_checksum") == state_checksum(state):
                out_derived[context.decode()] = json.loads(extra)
        return Snapshot(int(float(version or 0)), out_states, out_derived,
                        {arm.decode(): ArmHealth(**json.loads(text)) for arm, text in health.items()})

    @translate_errors(redis.RedisError)
    def decision(self, decision_id: str) -> Decision | None:
        text = self._redis.hget(self._key("decision", decision_id), "decision")
        return Decision.from_json(text) if text else None

    @translate_errors(redis.RedisError)
    def outcome(self, request_id: str) -> Outcome | None:
        text = self._redis.get(self._key("outcome", request_id))
        return Outcome.from_json(text) if text else None

    @translate_errors(redis.RedisError)
    def pending_count(self) -> int:
        return int(self._redis.zcard(self._key("pending")))

    @translate_errors(redis.RedisError)
    def counters(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self._redis.hgetall(self._key("counters")).items()}

    # writes --------------------------------------------------------------------------------------------------

    def apply_batch(self, operations: list[Operation], derive: Derive | None = None) -> list:
        results, changed = [], set()
        for index, operation in enumerate(operations):
            try:
                results.append(self._apply(operation, changed))
            except redis.RedisError as error:  # Redis is down or hung: the rest would wait just as long
                unavailable = StoreUnavailableError(f"{type(error).__name__}: {error}")
                results += [unavailable] * (len(operations) - index)
                break
            except Exception as error:
                results.append(error)
        try:
            for context in changed - {None} if derive else ():
                self._derive(context, derive)
        except redis.RedisError:  # the feedback is committed; decisions derive for themselves meanwhile
            logger.warning("could not store derived propensities for %s", sorted(changed - {None}))
        return results

    def _apply(self, operation: Operation, changed: set):
        if isinstance(operation, RecordDecision):
            return self._record_decision(operation.decision)
        if isinstance(operation, ApplyFeedback):
            return self._apply_feedback(operation, changed)
        if isinstance(operation, UpdateHealth):
            changed.add(None)
            return self._update_health(operation.arm, operation.update)
        if isinstance(operation, RecordOutcome):
            return self._record_outcome(operation.outcome)
        if isinstance(operation, Expire):
            return self._expire(operation.now, operation.ttl)
        raise TypeError(f"unknown store operation {operation!r}")

    def _derive(self, context: str, derive: Derive) -> None:
        """Store what decisions read beside a state, tied to that state by its checksum (if another replica
        changes the state meanwhile, readers see the mismatch and derive for themselves)."""
        state = self._redis.hget(self._key("state"), context)
        derived = derive(context, json.loads(state)) if state is not None else None
        if derived:
            extra = {**derived, "state_checksum": state_checksum(state)}
            self._redis.hset(self._key("derived"), context, json.dumps(extra))

    def _record_decision(self, decision: Decision) -> Decision:
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

    def _apply_feedback(self, op: ApplyFeedback, changed: set) -> tuple[FeedbackOutcome, Decision | None]:
        decision_key, state_key, health_key = self._key("decision", op.decision_id), self._key("state"), \
            self._key("health")
        result: dict = {}

        def transaction(pipe: redis.client.Pipeline) -> None:
            record = pipe.hgetall(decision_key)
            decision = Decision.from_json(record[b"decision"]) if record else None
            previous = float(record[b"reward"]) if b"reward" in record else None
            outcome = feedback_outcome(decision, previous, op.reward, op.now, op.ttl)
            new_state = health = None
            if outcome is FeedbackOutcome.APPLIED:
                state = pipe.hget(state_key, decision.context)
                new_state = op.update(json.loads(state) if state else None, decision)
                if op.health is not None:
                    text = pipe.hget(health_key, decision.arm)
                    health = op.health(ArmHealth(**json.loads(text)) if text else ArmHealth())
            pipe.multi()
            if new_state is not None:
                pipe.hset(state_key, decision.context, json.dumps(new_state))
                pipe.hset(decision_key, "reward", repr(op.reward))
                pipe.zrem(self._key("pending"), op.decision_id)
                pipe.hincrbyfloat(self._key("counters"), "version", 1)
            if health is not None:
                pipe.hset(health_key, decision.arm, json.dumps(asdict(health)))
            pipe.hincrbyfloat(self._key("counters"), f"feedback:{outcome.value}", 1)
            result.update(outcome=outcome, decision=decision)

        self._redis.transaction(transaction, decision_key, state_key, health_key)
        if result["outcome"] is FeedbackOutcome.APPLIED:
            changed.add(result["decision"].context)
        return result["outcome"], result["decision"]

    def _record_outcome(self, outcome: Outcome) -> OutcomeStatus:
        key = self._key("outcome", outcome.request_id)
        result: dict = {}

        def transaction(pipe: redis.client.Pipeline) -> None:
            kept = pipe.get(key)
            result["status"] = status = outcome_status(Outcome.from_json(kept) if kept else None, outcome)
            pipe.multi()
            if status is OutcomeStatus.RECORDED:
                pipe.set(key, outcome.to_json())
                pipe.zadd(self._key("outcomes_created"), {outcome.request_id: outcome.created})
                for name, value in outcome.counts().items():
                    pipe.hincrbyfloat(self._key("counters"), name, value)

        self._redis.transaction(transaction, key)
        return result["status"]

    def _update_health(self, arm: str, update) -> ArmHealth:
        key = self._key("health")
        result: dict = {}

        def transaction(pipe: redis.client.Pipeline) -> None:
            text = pipe.hget(key, arm)
            health = update(ArmHealth(**json.loads(text)) if text else ArmHealth())
            pipe.multi()
            pipe.hset(key, arm, json.dumps(asdict(health)))
            pipe.hincrbyfloat(self._key("counters"), "version", 1)
            result["health"] = health

        self._redis.transaction(transaction, key)
        return result["health"]

    def _expire(self, now: float, ttl: float) -> int:
        old = self._redis.zrangebyscore(self._key("created"), "-inf", now - ttl)
        old_outcomes = self._redis.zrangebyscore(self._key("outcomes_created"), "-inf", now - ttl)
        if not old and not old_outcomes:
            return 0
        with self._redis.pipeline(transaction=True) as pipe:
            if old:
                pipe.delete(*(self._key("decision", d.decode()) for d in old))
                pipe.zrem(self._key("pending"), *old)
                pipe.zrem(self._key("created"), *old)
            if old_outcomes:
                pipe.delete(*(self._key("outcome", r.decode()) for r in old_outcomes))
                pipe.zrem(self._key("outcomes_created"), *old_outcomes)
            pipe.execute()
        return len(old) + len(old_outcomes)

    def close(self) -> None:
        self._redis.close()
