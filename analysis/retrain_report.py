"""The demo's retraining segment in its report: the alert, the retraining's stages from its ledger
(``retraining/commands.py``), the new version's out-of-sample comparison, and its rollout's decisions, on one
timeline (a plot) measured from the moment the drift was sent.
"""

from __future__ import annotations

import datetime
from pathlib import Path

STAGES = {"start": "training began", "registered": "version registered", "applied": "Model and Experiment applied",
          "end": "rollout decided"}


def _seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def summarise(sent_at: float | None, request: dict, ledger: list[dict], audit: list[dict], what: str) -> dict:
    """Times are seconds from the alert's start. ``sent_at``: when an injected drift was sent (epoch seconds; None
    when the alert came from the traffic itself); ``request``: the receiver's retraining request; ``ledger``: the
    retraining's ledger lines for its alert; ``audit``: its rollout's audit run; ``what``: what drifted, said
    plainly."""
    fired = _seconds(request["alert"]["startsAt"])
    events = [{"t": sent_at - fired, "what": "drift sent to the detector"}] if sent_at is not None else []
    events += [{"t": 0.0, "what": "MarketAbInputDrift fired"},
               {"t": request["received"] - fired, "what": "Alertmanager's request reached the trigger"}]
    events += [{"t": _seconds(line["time"]) - fired, "what": STAGES[line["event"]]} for line in ledger
               if line["event"] in STAGES]
    decisions = []
    for record in (r for r in audit if r["event"] == "weights"):
        weight = record["weights"][_candidate(audit)]
        if not decisions or decisions[-1]["weight"] != weight:  # a change, not its confirmation
            decisions.append({"t": _seconds(record["time"]) - fired, "weight": weight})
    registered = next((line for line in ledger if line["event"] == "registered"), None)
    end = next((line for line in ledger if line["event"] == "end"), None)
    return {"what": what, "alert": request["alert"]["labels"], "events": sorted(events, key=lambda e: e["t"]),
            "weights": decisions, "version": registered and registered["version"],
            "cut": registered and registered["cut"], "training_window": registered and registered["training_window"],
            "comparison": registered and registered["comparison"],
            "training_seconds": registered and registered["training_seconds"],
            "result": end["result"] if end else "unfinished", "reasons": end["reasons"] if end else []}


def _candidate(audit: list[dict]) -> str:
    return audit[0]["spec"]["candidate"]


def draw(retraining: dict, path: Path) -> Path:
    """The timeline: each event as a mark, the new version's weight as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 3.4))
    if retraining["weights"]:
        times = [w["t"] for w in retraining["weights"]]
        axis.step([min(0.0, *times), *times], [0, *[w["weight"] for w in retraining["weights"]]], where="post",
                  color="tab:blue", label="new version's weight (%)")
    top = max([w["weight"] for w in retraining["weights"]] + [100])
    for i, event in enumerate(retraining["events"]):
        axis.axvline(event["t"], color="grey", linewidth=0.8, linestyle="--")
        axis.annotate(event["what"], (event["t"], top * (0.95 - 0.12 * (i % 6))), fontsize=7, rotation=0,
                      xytext=(3, 0), textcoords="offset points")
    axis.set_xlabel("seconds from the alert")
    axis.set_ylabel("weight (%)")
    axis.set_ylim(0, top * 1.05)
    axis.set_title(f"drift alert -> retraining -> rollout of version {retraining['version']}: "
                   f"{retraining['result']}", fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
