"""The report's plots, one function each, every one drawn from the report's data (``report.json``'s content);
``plots_of`` says which plots a report has and what its page calls them, ``draw`` draws them into its folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import retrain_report, rollout_report

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Plot:
    caption: str  # what the page calls it
    file: str  # its name in the report's folder
    draw: Callable[[Path], Path]  # draws it into the path given, and returns that path


def plots_of(report: dict) -> list[Plot]:
    """The plots a report has, in the order its page shows them: the report's own, with each experiment's retraining
    timeline and rollout (drawn by ``retrain_report`` and ``rollout_report``) after the accuracy per arm."""
    plots = [_own("traffic share over time per arm", "traffic-share.png", traffic_share, report),
             _own("accuracy per arm with intervals", "accuracy.png", accuracy, report)]
    for experiment in report["experiments"]:
        name = experiment["name"]
        if experiment.get("retraining"):
            plots.append(Plot(f"{name}: from the drift alert to the rollout's decision", f"{name}-timeline.png",
                              partial(retrain_report.draw, experiment["retraining"])))
        if experiment.get("rollout"):
            plots.append(Plot(f"{name}: the candidate's weight and the gates' figures over the rollout", f"{name}.png",
                              partial(rollout_report.draw, name, experiment["rollout"])))
    plots += [_own("latency percentiles per arm", "latency.png", latency, report),
              _own("posterior accuracy per arm and cumulative regret", "posterior-regret.png", posterior_regret,
                   report)]
    if routed(report["experiments"]):
        plots.append(_own("routing and accuracy per regime", "regimes.png", regimes, report))
    if report.get("drift"):
        plots.append(_own("drift verdicts over the run", "drift.png", drift, report))
    plots.append(_own("business impact", "business-impact.png", business_impact, report))
    return plots


def draw(report: dict, folder: Path) -> dict[str, Path]:
    """Every plot of the report drawn into ``folder``: caption -> path."""
    return {plot.caption: plot.draw(folder / plot.file) for plot in plots_of(report)}


def routed(experiments: list[dict]) -> list[dict]:
    """The router pipelines: experiments with regimes and more than two arms."""
    return [e for e in experiments if e.get("regimes") and len(e["arms"]) > 2]


# one function per plot: the report in, a figure out ---------------------------------------------------------------

def traffic_share(report: dict) -> Figure:
    experiments = report["experiments"]
    figure, axes = _per_experiment(experiments)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        for arm, values in (experiment.get("timeline") or {}).get("share", {}).items():
            axis.plot(np.arange(1, len(values) + 1), 100 * np.array(values), label=arm)
        axis.set_title(experiment["name"], fontsize=9)
        axis.set_xlabel("twentieths of the run", fontsize=8)
        axis.set_ylim(-2, 102)
        axis.legend(fontsize=6)
    axes[0][0].set_ylabel("traffic share (%)")
    return figure


def accuracy(report: dict) -> Figure:
    experiments = report["experiments"]
    figure, axes = _per_experiment(experiments)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        names = list(experiment["arms"])
        values = np.array([experiment["arms"][n]["accuracy"] for n in names])
        ci = np.array([experiment["arms"][n]["accuracy_ci"] for n in names])
        axis.errorbar(range(len(names)), 100 * values, yerr=100 * np.abs(ci.T - values), fmt="o", capsize=3)
        axis.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        axis.axhline(50, color="grey", linewidth=0.8, linestyle="--")
        axis.set_title(experiment["name"], fontsize=9)
    axes[0][0].set_ylabel("accuracy (%), 95% CI")
    return figure


def latency(report: dict) -> Figure:
    experiments = report["experiments"]
    figure, axes = _per_experiment(experiments)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        names = list(experiment["arms"])
        for i, q in enumerate(("p50", "p95", "p99")):
            axis.bar(np.arange(len(names)) + (i - 1) * 0.27, [experiment["arms"][n]["latency_ms"][q] for n in names],
                     width=0.27, label=q)
        axis.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        axis.set_title(experiment["name"], fontsize=9)
        axis.legend(fontsize=6)
    axes[0][0].set_ylabel("latency (ms)")
    return figure


def posterior_regret(report: dict) -> Figure:
    experiments = report["experiments"]
    figure, axes = _per_experiment(experiments, rows=2, height=5.6)
    for column, experiment in enumerate(experiments):
        line = experiment.get("timeline") or {}
        for arm, points in (line.get("posterior") or {}).items():
            points = np.array(points)
            axes[0][column].plot(line["requests"], 100 * points[:, 0], label=arm)
            axes[0][column].fill_between(line["requests"], 100 * points[:, 1], 100 * points[:, 2], alpha=0.15)
        axes[0][column].set_title(experiment["name"], fontsize=9)
        axes[0][column].legend(fontsize=6)
        if line.get("cumulative_regret"):
            axes[1][column].plot(line["requests"], line["cumulative_regret"])
        axes[1][column].set_xlabel("requests", fontsize=8)
    axes[0][0].set_ylabel("accuracy posterior (%), 95%")
    axes[1][0].set_ylabel("cumulative regret, in correct\nanswers (vs the run's best arm)")
    return figure


def regimes(report: dict) -> Figure:
    pipelines = routed(report["experiments"])
    figure, axes = _per_experiment(pipelines, height=3.4, width=4.6)
    for axis, experiment in zip(axes[0], pipelines, strict=True):
        cells = experiment["regimes"]
        names = list(cells)
        totals = np.array([sum(c["n"] for c in cells[g].values()) for g in names], float)
        bottom = np.zeros(len(names))
        for arm in experiment["arms"]:
            share = 100 * np.array([cells[g].get(arm, {}).get("n", 0) for g in names], float) / totals
            axis.bar(range(len(names)), share, bottom=bottom, label=arm)
            bottom += share
        correct = [100 * sum(c["correct"] for c in cells[g].values()) / totals[i] for i, g in enumerate(names)]
        axis.plot(range(len(names)), correct, "ko--", label="accuracy")
        axis.set_xticks(range(len(names)), names, fontsize=7)
        axis.set_title(f"{experiment['name']}: routing and accuracy per regime", fontsize=9)
        axis.legend(fontsize=6)
    axes[0][0].set_ylabel("share of requests / accuracy (%)")
    return figure


def drift(report: dict) -> Figure:
    figure, axes = _figure(size=(7, 2.4))
    axis = axes[0][0]
    instruments = sorted({d["instrument"] for d in report["drift"]})
    for d in report["drift"]:
        y = instruments.index(d["instrument"])
        start, end = np.datetime64(d["first_date"]), np.datetime64(d["last_date"])
        axis.plot([start, end], [y + (0.15 if d["is_drift"] else -0.15)] * 2, linewidth=4,
                  color="tab:red" if d["is_drift"] else "tab:green", alpha=0.7)
    axis.set_yticks(range(len(instruments)), instruments)
    axis.set_ylim(-0.6, len(instruments) - 0.4)
    axis.set_title("drift detector's verdict per 60-day window (red: drift, green: none)", fontsize=9)
    figure.autofmt_xdate()
    return figure


def business_impact(report: dict) -> Figure:
    figure, axes = _figure(size=(7, 3.4))
    axis = axes[0][0]
    labels, totals, lows, highs = [], [], [], []
    for experiment in report["experiments"]:
        for name, impact in (experiment.get("business_impact") or {}).items():
            labels.append(f"{experiment['name']}: {name}")
            totals.append(impact["total"])
            lows.append(impact["total"] - impact["total_ci"][0])
            highs.append(impact["total_ci"][1] - impact["total"])
    if labels:
        axis.barh(range(len(labels)), totals, xerr=[lows, highs], capsize=3)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_xlabel(f"impact of switching over {report['business_model']['trades']:,} trades (95% CI)")
    return figure


# figures and files -------------------------------------------------------------------------------------------------

def _figure(rows: int = 1, columns: int = 1, size: tuple[float, float] = (7, 3.4)) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure  # imported when drawing: the rest of the report needs no matplotlib

    figure = Figure(figsize=size)  # not pyplot's: nothing global to select a backend for or to close
    return figure, figure.subplots(rows, columns, squeeze=False)


def _per_experiment(experiments: list[dict], rows: int = 1, height: float = 3.2,
                    width: float = 3.2) -> tuple[Figure, np.ndarray]:
    """A column of ``rows`` panels per experiment."""
    return _figure(rows, len(experiments), (width * len(experiments), height))


def _own(caption: str, file: str, figure_of: Callable[[dict], Figure], report: dict) -> Plot:
    return Plot(caption, file, partial(_save, figure_of, report))


def _save(figure_of: Callable[[dict], Figure], report: dict, path: Path) -> Path:
    figure = figure_of(report)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
