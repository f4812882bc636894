"""Arm health: which arms may get traffic, health messages, the error streaks that feedback reports, and the gauge.

A health message ``arm`` BYTES [n] with ``healthy`` INT32/BOOL [n] answers ``status`` BYTES [n]; ``healthy: 0``
takes an arm out until ``healthy: 1``. ``max_consecutive_errors`` feedback rows with ``error: 1`` take it out for
``unhealthy_cooldown_seconds``. Health lives in the store, beside the policy state, for every worker and replica.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

from mlserver.types import InferenceRequest

from seldon_market_ab.protocol import InvalidInput, decode_numbers, decode_strings, encode_strings

from .settings import RouterSettings
from .state import RouterState
from .stores import ArmHealth, Snapshot, UpdateHealth


def eligible_arms(config: RouterSettings, snapshot: Snapshot, now: float) -> tuple[str, ...]:
    """The arms that may get traffic now; the default arm alone when none may."""
    healthy = tuple(a for a in config.arms if snapshot.health.get(a, ArmHealth()).healthy(now))
    return healthy or (config.fallback_arm,)


def after_reward(config: RouterSettings, error: bool, now: float):
    """How an applied reward changes its arm's health (``max_consecutive_errors`` errors: a cooldown)."""
    def update(health: ArmHealth) -> ArmHealth:
        if not error:  # a success ends an error streak, but not a cooldown or a health message
            ends_streak = health.consecutive_errors and health.healthy(now)
            return replace(health, consecutive_errors=0) if ends_streak else health
        errors = health.consecutive_errors + 1
        if errors >= config.max_consecutive_errors:
            return ArmHealth(errors, max(health.unhealthy_until, now + config.unhealthy_cooldown_seconds))
        return replace(health, consecutive_errors=errors)

    return update


def _marked(healthy: bool):
    """A health message's update: back in with a clean record, or out until the next message."""
    def update(health: ArmHealth) -> ArmHealth:
        return ArmHealth() if healthy else replace(health, unhealthy_until=math.inf)

    return update


class HealthMessages:
    """Health messages: committed before the answer, like feedback."""

    def __init__(self, state: RouterState):
        self.state = state

    async def answer(self, payload: InferenceRequest) -> list:
        arms = self.state.config.arms
        named = decode_strings(payload, "arm", "unknown_arm")
        healthy = decode_numbers(payload, "healthy", ("BOOL", "INT32", "INT64"), len(named))
        unknown = sorted(set(named) - set(arms))
        if unknown:
            raise InvalidInput(f"unknown arms {unknown}; arms are {list(arms)}", "unknown_arm")
        await self.state.commit([UpdateHealth(arm, _marked(bool(ok))) for arm, ok in zip(named, healthy, strict=True)],
                                "health message")
        return [encode_strings("status", ["healthy" if ok else "unhealthy" for ok in healthy])]


class HealthGauge:
    """``market_ab_router_arm_healthy``: refreshed from every new snapshot, and when the next cooldown ends, so that
    it is right at every scrape even when no request comes to refresh it."""

    def __init__(self, state: RouterState):
        self.state = state
        self._timer: asyncio.TimerHandle | None = None

    def publish(self) -> None:
        state = self.state
        now = state.clock()
        eligible = eligible_arms(state.config, state.snapshot, now)
        for arm in state.config.arms:
            state.metrics["healthy"].labels(state.name, arm).set(1.0 if arm in eligible else 0.0)
        ends = [h.unhealthy_until for h in state.snapshot.health.values() if now < h.unhealthy_until < math.inf]
        self.close()
        if ends:
            self._timer = asyncio.get_running_loop().call_later(min(ends) - now + 0.01, self.publish)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
