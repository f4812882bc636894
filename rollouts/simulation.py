"""Rollouts simulated, pure and seeded: traffic split by the weights in force, each arm's failures, latencies and
accuracy drawn from a model of it, outcomes arriving one interval after their answers, and ``controller.decide`` at
every interval, exactly as ``market-ab rollout run`` calls it. For the tests, and for the calibration (how often an
A/A candidate is promoted, how many requests a faulty one answers before it is rolled back)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seldon_market_ab.metrics import LATENCY_BUCKETS

from .controller import PROGRESSING, Decision, Progress, decide
from .document import RolloutSpec
from .gates import ArmFigures

_EDGES = np.array([*LATENCY_BUCKETS, np.inf])


@dataclass(frozen=True)
class ArmModel:
    accuracy: float = 0.53
    failure_rate: float = 0.0
    latency_ms: float = 8.0  # median of a log-normal
    latency_sigma: float = 0.35
    added_ms: float = 0.0


@dataclass
class _Arm:
    model: ArmModel
    requests: int = 0
    failures: int = 0
    outcomes: int = 0
    correct: int = 0
    pending: tuple[int, int] = (0, 0)  # (outcomes, correct) answered this interval, known the next
    counts: np.ndarray | None = None

    def serve(self, n: int, rng: np.random.Generator) -> None:
        failed = rng.binomial(n, self.model.failure_rate)
        answered = n - failed
        latency = self.model.added_ms + self.model.latency_ms * np.exp(self.model.latency_sigma *
                                                                        rng.standard_normal(answered))
        counts = np.bincount(np.searchsorted(_EDGES, latency / 1e3), minlength=len(_EDGES))
        self.counts = counts if self.counts is None else self.counts + counts
        self.outcomes, self.correct = self.outcomes + self.pending[0], self.correct + self.pending[1]
        self.pending = (answered, rng.binomial(answered, self.model.accuracy))
        self.requests, self.failures = self.requests + n, self.failures + failed

    def figures(self) -> ArmFigures:
        cumulative = np.cumsum(self.counts) if self.counts is not None else np.zeros(len(_EDGES))
        return ArmFigures(self.requests, self.failures, self.outcomes, self.correct, 0.0,
                          tuple(zip(_EDGES.tolist(), cumulative.tolist(), strict=True)))


@dataclass(frozen=True)
class Simulated:
    phase: str
    candidate_requests: int
    seconds: float
    decisions: tuple[Decision, ...]


def simulate(spec: RolloutSpec, baseline: ArmModel, candidate: ArmModel, requests_per_second: float,
             seed: int = 0) -> Simulated:
    rng = np.random.default_rng(seed)
    arms = _Arm(baseline), _Arm(candidate)
    progress, weight, now, decisions = Progress.begin(0.0), spec.steps[0], 0.0, []
    while progress.phase == PROGRESSING:
        n = rng.poisson(requests_per_second * spec.interval)
        to_candidate = rng.binomial(n, weight / 100)
        arms[0].serve(n - to_candidate, rng)
        arms[1].serve(to_candidate, rng)
        now += spec.interval
        decision = decide(spec, progress, arms[0].figures(), arms[1].figures(), now)
        decisions.append(decision)
        progress, weight = decision.progress, decision.candidate_weight
    return Simulated(progress.phase, arms[1].requests, now, tuple(decisions))
