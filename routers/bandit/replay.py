"""Offline replays and off-policy estimates, with the same policy objects the routers run.

A replay feeds a policy a sequence of rounds whose every arm's reward is known (full
information: a simulation, or every model's realised correctness on a past day) and
hides all but the chosen arm's reward from the policy, delivering it ``delay`` rounds
late, as a router receives delayed feedback. The log keeps each decision's propensity,
so inverse-propensity (IPS) and doubly-robust (DR) estimates of any other policy's value
can be computed from it and checked against that policy's true value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReplayLog:
    arms: tuple[str, ...]
    chosen: np.ndarray  # [T] index into arms
    propensity: np.ndarray  # [T] probability of the chosen arm when it was chosen
    reward: np.ndarray  # [T] reward of the chosen arm

    def share(self, arm: str) -> np.ndarray:
        return (self.chosen == self.arms.index(arm)).astype(float)


def replay(policy, rewards: np.ndarray, batches: np.ndarray | None = None, delay: int = 1,
           seed: int = 0, contexts: np.ndarray | None = None) -> ReplayLog:
    """Run ``policy`` over ``rewards [T, arms]``.

    Rounds with the same ``batches`` value (say, one trading day) are decided from the same
    state. Their rewards reach the policy after the decisions of the batch ``delay`` batches later:
    ``delay=0`` is immediate feedback (known to the next batch); ``delay=1`` is one step late (the
    next batch decides without it, the one after uses it). ``contexts`` gives each
    round a separate policy state (one per context, as the learned regime router keeps).
    """
    rewards = np.asarray(rewards, dtype=float)
    rounds = len(rewards)
    batches = np.arange(rounds) if batches is None else np.asarray(batches)
    contexts = np.zeros(rounds, dtype=int) if contexts is None else np.asarray(contexts)
    rng = np.random.default_rng(seed)
    arms = tuple(policy.arms)
    states = {c: policy.initial_state() for c in np.unique(contexts)}
    chosen, propensity = np.empty(rounds, dtype=int), np.empty(rounds)
    _, starts = np.unique(batches, return_index=True)
    boundaries = list(np.sort(starts)) + [rounds]
    for b in range(len(boundaries) - 1):
        batch_probabilities = {}  # one state per context within a batch
        for t in range(boundaries[b], boundaries[b + 1]):
            if contexts[t] not in batch_probabilities:
                batch_probabilities[contexts[t]] = policy.probabilities(states[contexts[t]])
            probabilities = batch_probabilities[contexts[t]]
            index = rng.choice(len(arms), p=[probabilities.get(a, 0.0) for a in arms])
            chosen[t], propensity[t] = index, probabilities[arms[index]]
        if b >= delay:  # after this batch's decisions, the rewards of the batch `delay` earlier arrive
            for t in range(boundaries[b - delay], boundaries[b - delay + 1]):
                states[contexts[t]] = policy.update(states[contexts[t]], arms[chosen[t]], rewards[t, chosen[t]])
    return ReplayLog(arms, chosen, propensity, rewards[np.arange(rounds), chosen])


def ips_terms(log: ReplayLog, target: np.ndarray) -> np.ndarray:
    """Per-round IPS terms for a target policy giving ``target [T, arms]`` probabilities."""
    weight = target[np.arange(len(log.chosen)), log.chosen] / log.propensity
    return weight * log.reward


def dr_terms(log: ReplayLog, target: np.ndarray, reward_model: np.ndarray) -> np.ndarray:
    """Per-round doubly-robust terms with a reward model ``[T, arms]`` (predicted reward of every arm)."""
    rows = np.arange(len(log.chosen))
    direct = (target * reward_model).sum(axis=1)
    weight = target[rows, log.chosen] / log.propensity
    return direct + weight * (log.reward - reward_model[rows, log.chosen])


def mean_reward_model(log: ReplayLog) -> np.ndarray:
    """A simple reward model: each arm's mean logged reward (propensity-weighted), the same every round."""
    means = np.zeros(len(log.arms))
    for i in range(len(log.arms)):
        mask = log.chosen == i
        means[i] = np.sum(log.reward[mask] / log.propensity[mask]) / np.sum(1 / log.propensity[mask]) \
            if mask.any() else log.reward.mean()  # an arm never chosen: the log's overall mean
    return np.tile(means, (len(log.chosen), 1))
