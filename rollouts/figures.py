"""Each arm's figures since a rollout began, from Prometheus: instant queries of the raw counters now, minus their
values when the rollout began (kept in the audit log, so a restarted loop counts from the same start).

- requests and server failures: Seldon's ``seldon_model_infer_total{model, code}`` (the agent's on a cluster, the
  local gateway's under ``market-ab serve``), failures being the codes of ``SERVER_FAILURE`` (a client's bad input
  is not the candidate's fault);
- latency: a histogram with a ``model`` label (``spec.gates.latency.histogram``; Seldon's own has none);
- outcomes: the ``outcomes`` model's ``market_ab_outcomes_total``, ``..._correct_total`` and
  ``market_ab_outcome_return_sum``.

A series that went down since the start (its process restarted) counts from zero again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from local_seldon.prometheus import PrometheusAPI

from .document import RolloutSpec
from .gates import ArmFigures

# What the error-rate alert (manifests/base/monitoring/prometheusrule.yaml) counts as the server's failure; a test
# checks the two agree.
SERVER_FAILURE = "5..|Internal|Unknown|Unavailable|DeadlineExceeded|ResourceExhausted|Unimplemented|DataLoss"


@dataclass(frozen=True)
class Counters:
    """Raw cumulative values of one instant: ``series[(arm, key)] = value``."""

    series: dict[tuple[str, str], float]

    def as_dict(self) -> dict:
        return {f"{arm}|{key}": value for (arm, key), value in self.series.items()}

    @classmethod
    def from_dict(cls, values: dict) -> Counters:
        return cls({tuple(name.split("|", 1)): float(value) for name, value in values.items()})

    def since(self, start: Counters, arm: str) -> ArmFigures:
        def delta(key: str) -> float:
            now, then = self.series.get((arm, key), 0.0), start.series.get((arm, key), 0.0)
            return now - then if now >= then else now  # went down: the process restarted

        les = sorted({float(key[3:]) for a, key in self.series if a == arm and key.startswith("le=")})
        return ArmFigures(int(delta("requests")), int(delta("server_errors")), int(delta("outcomes")),
                          int(delta("correct")), delta("return_sum"),
                          tuple((le, delta(f"le={le!r}")) for le in les))


class FiguresError(RuntimeError):
    """Prometheus could not be asked; the message says why."""


def _promql_regex(names) -> str:
    """Names as alternatives of a PromQL regex in a double-quoted string (RE2 escapes, backslashes doubled)."""
    return "|".join(re.escape(name).replace("\\", "\\\\") for name in names)


class PrometheusFigures:
    def __init__(self, spec: RolloutSpec, api: PrometheusAPI | None = None):
        self.spec, self.api = spec, api or PrometheusAPI(spec.prometheus)
        self.arms = {spec.baseline: "baseline", spec.candidate: "candidate"}

    def counters(self, at: float | None = None) -> Counters:
        try:
            return self._counters(at)
        except (OSError, RuntimeError, ValueError) as error:
            raise FiguresError(f"Prometheus at {self.spec.prometheus}: {error}") from None

    def _counters(self, at: float | None) -> Counters:
        selector = f'model=~"{_promql_regex(self.arms)}"'
        queries = {
            "requests": f"sum by (model) (seldon_model_infer_total{{{selector}}})",
            "server_errors": f'sum by (model) (seldon_model_infer_total{{{selector}, code=~"{SERVER_FAILURE}"}})',
            "outcomes": f"sum by (model) (market_ab_outcomes_total{{{selector}}})",
            "correct": f"sum by (model) (market_ab_outcomes_correct_total{{{selector}}})",
            "return_sum": f"sum by (model) (market_ab_outcome_return_sum{{{selector}}})",
        }
        series: dict[tuple[str, str], float] = {}
        for key, expr in queries.items():
            for result in self.api.query(expr, at):
                series[(self.arms[result["metric"]["model"]], key)] = result["value"]
        histogram = self.spec.gates.latency.histogram
        for result in self.api.query(f"sum by (model, le) ({histogram}_bucket{{{selector}}})", at):
            le = float(result["metric"]["le"])
            series[(self.arms[result["metric"]["model"]], f"le={le!r}")] = result["value"]
        return Counters(series)
