"""A rollout in the demo's report: its audit log (``rollouts/audit.py``) and the traffic's log made into the decision
and its reasons, the candidate's exposure, the weight over time against the gates' figures (a plot), and the split's
check against the weights in force when each request was routed.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import numpy as np

from .ab_analysis import sample_ratio_mismatch_over_time


def _seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


ROUTING_SLACK_SECONDS = 0.25  # a request sent this long before a change may still reach the gateway after it


def weights_in_force(audit: list[dict], initial: dict[str, float]) -> list[tuple[float, float, dict[str, float]]]:
    """``(asked, since, weights)``: each change of the experiment's weights, from when it was asked for to when it
    was acknowledged; ``initial`` before the first."""
    schedule = [(-math.inf, -math.inf, initial)]
    for record in audit:
        if record["event"] == "weights":
            acknowledged = _seconds(record["time"])
            schedule.append((_seconds(record.get("asked", record["time"])), acknowledged, record["weights"]))
    return schedule


def split_check(requests: list[dict], schedule: list[tuple[float, float, dict[str, float]]]) -> dict:
    """The sample-ratio check of a split that changed: each request against the weights in force when it was sent.
    Requests sent while a change was under way (asked for, not yet acknowledged) may have met either split; they are
    left out."""
    since = np.array([acknowledged for _, acknowledged, _ in schedule])
    routed, expected = [], []
    for request in requests:
        if request.get("arm") is None or "time" not in request:
            continue
        index = int(np.searchsorted(since, request["time"], side="right")) - 1
        following = schedule[index + 1] if index + 1 < len(schedule) else None
        if following is not None and following[0] - ROUTING_SLACK_SECONDS <= request["time"]:
            continue  # sent while the next change was under way, or just before it
        weights = schedule[index][2]
        total = sum(weights.values())
        routed.append(request["arm"])
        expected.append({name: weight / total for name, weight in weights.items()})
    return sample_ratio_mismatch_over_time(routed, expected)


def summarise(audit: list[dict], requests: list[dict], initial: dict[str, float]) -> dict:
    """What the report says of one rollout."""
    start = audit[0]
    t0 = _seconds(start["time"])
    spec = start["spec"]
    end = next((r for r in reversed(audit) if r["event"] == "end"), None)
    looks = []
    for record in audit:
        if record["event"] != "decision":
            continue
        gates = {gate["name"]: gate for gate in record.get("gates", [])}
        looks.append({"t": _seconds(record["time"]) - t0, "action": record["action"], "step": record["step"],
                      "weight": record["weights"][spec["candidate"]],
                      "candidate_requests": record.get("candidate_requests"),
                      "gates": {name: {"verdict": gate["verdict"], **gate["figures"]} for name, gate in gates.items()}})
    schedule = weights_in_force(audit, initial)
    last = audit[-1]
    return {"baseline": spec["baseline"], "candidate": spec["candidate"], "steps": spec["steps"],
            "interval": spec["interval"], "phase": end["phase"] if end else "unfinished",
            "reasons": end["reasons"] if end else ["the rollout had not ended when the report was written"],
            "candidate_requests": end["candidate_requests"] if end else looks[-1]["candidate_requests"] if looks
            else 0, "seconds": _seconds((end or last).get("time", start["time"])) - t0,
            "weights": [(since - t0, weights[spec["candidate"]]) for _, since, weights in schedule[1:]],
            "looks": looks, "srm": split_check(requests, schedule)}


def draw(name: str, rollout: dict, path: Path) -> Path:
    """The candidate's weight over time, and beneath it the figures its gates judged at each look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    looks = rollout["looks"]
    t = [look["t"] for look in looks]

    def series(gate: str, key: str, scale: float = 1.0) -> list[float]:
        return [scale * v if isinstance(v := look["gates"].get(gate, {}).get(key), int | float) else np.nan
                for look in looks]

    figure, axes = plt.subplots(4, 1, figsize=(7, 7.5), sharex=True)
    changes = rollout["weights"]
    end = rollout["seconds"] or (t[-1] if t else 0)
    axes[0].step([since for since, _ in changes] + [end], [w for _, w in changes] + [changes[-1][1] if changes else 0],
                 where="post")
    for look in looks:
        if look["action"] != "hold":
            axes[0].annotate(look["action"], (look["t"], look["weight"]), fontsize=7, rotation=30)
    axes[0].set_ylabel(f"{rollout['candidate']} weight (%)")
    axes[0].set_ylim(-5, 105)
    axes[0].set_title(f"{name}: {rollout['phase']} ({rollout['candidate_requests']} candidate requests)", fontsize=9)
    axes[1].plot(t, series("error_rate", "baseline_rate", 100), "o-", label=rollout["baseline"], markersize=3)
    axes[1].plot(t, series("error_rate", "candidate_rate", 100), "o-", label=rollout["candidate"], markersize=3)
    axes[1].set_ylabel("server errors (%)")
    axes[2].plot(t, series("latency", "candidate_p99_lower_bound_ms"), "o-", markersize=3,
                 label=f"{rollout['candidate']} p99, at least")
    axes[2].plot(t, series("latency", "limit_ms"), "x--", label="limit")
    axes[2].set_ylabel("ms")
    axes[3].plot(t, series("accuracy", "baseline_accuracy", 100), "o-", label=rollout["baseline"], markersize=3)
    axes[3].plot(t, series("accuracy", "candidate_accuracy", 100), "o-", label=rollout["candidate"], markersize=3)
    axes[3].set_ylabel("accuracy (%)")
    axes[3].set_xlabel("seconds since the rollout began")
    for axis in axes[1:]:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

