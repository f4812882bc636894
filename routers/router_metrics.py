"""Every metric of a router (``market_ab_router_*``), defined in one place; the handlers label them by router name."""

from __future__ import annotations

from seldon_market_ab import metrics

DELAY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
REWARD_BUCKETS = (-0.05, -0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02, 0.05, 0.5, 1.0)
COMMIT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def router_metrics() -> dict:
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


class CommitObserver:
    """``StoreWriter(observe=...)``: the writes of each group commit, all and awaited ones (in the writer thread)."""

    def __init__(self, commit_writes, name: str):
        self.all, self.awaited = commit_writes.labels(name, "all"), commit_writes.labels(name, "awaited")

    def __call__(self, all_writes: int, awaited: int) -> None:
        self.all.observe(all_writes)
        if awaited:
            self.awaited.observe(awaited)
