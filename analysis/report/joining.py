"""A demo run's logs joined per experiment: the requests each experiment's Locust log holds
(``loadtest/locustfile.py``), their feedback, and, for a bandit, the propensity its router logged for each request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ab_analysis import ArmLog


@dataclass(frozen=True)
class ExperimentRun:
    name: str
    kind: str  # "aa", "ab" or "faulty"
    target: str  # the seldon-model header the traffic used
    baseline: str
    weights: dict[str, float] | None  # configured split (experiments); None for a bandit or a router
    log: Path  # JSON lines from the locustfile
    router: str | None = None


def log_entries(path: Path) -> list[dict]:
    """Every line of a Locust log (requests, feedback, outcomes)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_log(path: Path) -> tuple[list[dict], dict[str, dict]]:
    """The requests in arrival order, and the feedback by request id."""
    entries = log_entries(path)
    requests = sorted((e for e in entries if e["kind"] == "request"), key=lambda e: e["t"])
    feedback = {e["request_id"]: e for e in entries if e["kind"] == "feedback"}
    return requests, feedback


def arm_logs(requests: list[dict], propensities: dict[str, float] | None = None) -> dict[str, ArmLog]:
    """One ``ArmLog`` per arm, requests in arrival order; a failed request counts against the arm that failed.
    ``propensities``: the router's, by request id; a request it did not log gets NaN."""
    by_arm: dict[str, list[dict]] = {}
    for entry in requests:
        by_arm.setdefault(entry.get("arm") or "unknown", []).append(entry)
    logs = {}
    for arm, entries in sorted(by_arm.items()):
        error = np.array(["error" in e for e in entries])
        logs[arm] = ArmLog(
            arm, np.array([e["t"] for e in entries]), np.array([bool(e.get("correct")) for e in entries]),
            np.array([e.get("strategy_return", 0.0) for e in entries], float),
            np.array([e["latency_ms"] for e in entries], float), error,
            np.array([propensities.get(e["request_id"], math.nan) for e in entries]) if propensities else None)
    return logs
