"""What the running stack saw, beside what the load generator logged: each arm's outcomes as the outcomes model stored
them and as Prometheus scraped them, the alerts that fired, and the Grafana dashboard's panels drawn from the run's
Prometheus data (``query_range`` of every panel's expressions; Grafana itself is not needed to see them).

Counts are kept per model as ``{"outcomes": n, "correct": k, "return_sum": r}``; an experiment's are the difference
between the totals after and before it ran.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

FIELDS = ("outcomes", "correct", "return_sum")
STORE_COUNTERS = {"outcomes": "outcomes:", "correct": "outcomes_correct:", "return_sum": "outcome_return:"}
PROMETHEUS_QUERIES = {"outcomes": "sum by (model) (market_ab_outcomes_total)",
                      "correct": "sum by (model) (market_ab_outcomes_correct_total)",
                      "return_sum": "sum by (model) (market_ab_outcome_return_sum)"}


def from_store(counters: dict[str, float]) -> dict[str, dict]:
    """Per-model totals from the outcomes store's counters (``StateStore.counters()``)."""
    out: dict[str, dict] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
    for name, value in counters.items():
        for field, prefix in STORE_COUNTERS.items():
            if name.startswith(prefix):
                out[name[len(prefix):]][field] = float(value)
    return dict(out)


def from_prometheus(prometheus) -> dict[str, dict]:
    """Per-model totals as Prometheus has them now (``PrometheusAPI``)."""
    out: dict[str, dict] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
    for field, expr in PROMETHEUS_QUERIES.items():
        for row in prometheus.query(expr):
            out[row["metric"]["model"]][field] = row["value"]
    return dict(out)


def from_log(entries: list[dict]) -> dict[str, dict]:
    """Per-model totals of the outcomes a Locust log says were recorded."""
    out: dict[str, dict] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
    for entry in entries:
        if entry.get("kind") == "outcome" and entry.get("status") == "recorded":
            counts = out[entry["model"]]
            counts["outcomes"] += 1
            counts["correct"] += float(entry["correct"])
            counts["return_sum"] += entry["strategy_return"]
    return dict(out)


def difference(after: dict[str, dict], before: dict[str, dict]) -> dict[str, dict]:
    """``after - before`` per model, leaving out models with no new outcome."""
    out = {}
    for model, counts in after.items():
        earlier = before.get(model, {})
        change = {field: counts.get(field, 0.0) - earlier.get(field, 0.0) for field in FIELDS}
        if change["outcomes"]:
            out[model] = change
    return out


def same_counts(a: dict[str, dict], b: dict[str, dict], tolerance: float = 1e-9) -> bool:
    """Equal outcome and correct counts per model (exactly), and return sums within ``tolerance``."""
    models = set(a) | set(b)
    zero = dict.fromkeys(FIELDS, 0.0)
    return all(a.get(m, zero)["outcomes"] == b.get(m, zero)["outcomes"] and
               a.get(m, zero)["correct"] == b.get(m, zero)["correct"] and
               math.isclose(a.get(m, zero)["return_sum"], b.get(m, zero)["return_sum"], abs_tol=tolerance)
               for m in models)


def live_summary(log: dict, store: dict, prometheus: dict) -> dict:
    """One experiment's arms as the three sources counted them, and whether they agree."""
    arms = {}
    for model in sorted(set(log) | set(store) | set(prometheus)):
        counts = store.get(model) or dict.fromkeys(FIELDS, 0.0)
        n = counts["outcomes"]
        arms[model] = {"log": log.get(model), "store": store.get(model), "prometheus": prometheus.get(model),
                       "accuracy": counts["correct"] / n if n else None,
                       "mean_return": counts["return_sum"] / n if n else None}
    return {"arms": arms, "store_equals_log": same_counts(store, log, 1e-6),
            "prometheus_equals_store": same_counts(prometheus, store, 1e-6)}


# alerts ------------------------------------------------------------------------------------------------------------

def firing_alerts(prometheus, start: float, end: float, step: float) -> list[dict]:
    """Every alert that was firing at some evaluation between ``start`` and ``end``: its labels, and the first and
    last time it was seen firing (Prometheus keeps them as the ``ALERTS`` series)."""
    end = start + math.ceil((end - start) / step) * step  # a step at or after ``end``: its last samples are seen
    rows = prometheus.query_range('ALERTS{alertstate="firing"}', start, end, step)
    alerts = []
    for row in rows:
        labels = {k: v for k, v in row["metric"].items() if k not in ("__name__", "alertstate")}
        times = [t for t, value in row["values"] if value]
        if times:
            alerts.append({"alertname": labels.pop("alertname"), "labels": labels, "first": min(times),
                           "last": max(times)})
    return sorted(alerts, key=lambda a: (a["first"], a["alertname"]))


def during(moment: float, windows: list[dict]) -> str:
    """The experiment whose traffic ran at ``moment`` (``windows``: name, start, end), else ``after <last>``."""
    for window in windows:
        if window["start"] <= moment <= window["end"]:
            return window["name"]
    earlier = [w["name"] for w in windows if w["end"] < moment]
    return f"after {earlier[-1]}" if earlier else "before the first"


# the dashboard -----------------------------------------------------------------------------------------------------

def dashboard_series(prometheus, dashboard: dict, start: float, end: float, step: float) -> list[dict]:
    """Every panel's series over the run: ``[{"title", "unit", "series": [{"label", "t", "v"}]}]``."""
    panels = []
    for panel in dashboard["panels"]:
        series = []
        for target in panel["targets"]:
            for row in prometheus.query_range(target["expr"], start, end, step):
                label = ", ".join(f"{k}={v}" for k, v in sorted(row["metric"].items()) if k != "__name__")
                finite = [(t, v) for t, v in row["values"] if math.isfinite(v)]
                if finite:
                    series.append({"label": label or target["expr"][:40], "t": [t for t, _ in finite],
                                   "v": [v for _, v in finite]})
        panels.append({"title": panel["title"], "unit": panel.get("fieldConfig", {}).get("defaults", {}).get("unit"),
                       "series": series})
    return panels


def draw_dashboard(panels: list[dict], path: Path, start: float) -> Path:
    """The panels in a grid, as Grafana lays them out two to a row; time in minutes from the run's start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(panels) / 2)
    figure, axes = plt.subplots(rows, 2, figsize=(12, 2.6 * rows), squeeze=False)
    for axis, panel in zip(axes.ravel(), panels, strict=False):
        for series in panel["series"][:12]:
            axis.plot([(t - start) / 60 for t in series["t"]], series["v"], linewidth=1, label=series["label"][:40])
        axis.set_title(panel["title"], fontsize=9)
        axis.tick_params(labelsize=7)
        if panel["unit"] in ("percentunit",):
            axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        if panel["series"]:
            axis.legend(fontsize=5, loc="upper left")
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes, color="grey")
    for axis in axes.ravel()[len(panels):]:
        axis.axis("off")
    for axis in axes[-1]:
        axis.set_xlabel("minutes since the run started", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
