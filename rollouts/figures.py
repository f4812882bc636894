"""Each arm's figures since a rollout began, from Prometheus: every raw series at one evaluation time, minus its value
when the rollout began (kept in the audit log, so a restarted loop counts from the same start).

- requests and server failures: Seldon's ``seldon_model_infer_total{model, code}`` (the agent's on a cluster, the
  local gateway's under ``market-ab serve``), failures being the codes of ``SERVER_FAILURE`` (a client's bad input
  is not the candidate's fault);
- latency: a histogram with a ``model`` label (``spec.gates.latency.histogram``; Seldon's own has none);
- outcomes: the ``outcomes`` model's ``market_ab_outcomes_total``, ``..._correct_total`` and
  ``market_ab_outcome_return_sum`` (a gauge: a sum of returns may fall).

Each series is followed on its own: one that went down (its process restarted) counts from zero again, and the others
are not disturbed. The figures are per model: a baseline that also serves other routes (a pipeline step, another
experiment) pools them, so a rollout is clearest on models of its own, as in the demo.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from seldon_market_ab.local_seldon.prometheus import PrometheusAPI

from .document import RolloutSpec
from .gates import ArmFigures

# What the error-rate alert (manifests/base/monitoring/prometheusrule.yaml) counts as the server's failure; a test
# checks the two agree.
SERVER_FAILURE = "5..|Internal|Unknown|Unavailable|DeadlineExceeded|ResourceExhausted|Unimplemented|DataLoss"
COUNTERS = ("requests", "server_errors", "outcomes", "correct", "latency")


class FiguresError(RuntimeError):
    """Prometheus could not be asked; the message says why."""


@dataclass(frozen=True)
class Counters:
    """Raw values of every series at one instant: ``series[(arm, quantity, labels)] = value``, ``labels`` the
    series' other labels as sorted JSON (a histogram bucket's ``le`` among them)."""

    series: dict[tuple[str, str, str], float]
    at: float = 0.0

    def as_dict(self) -> dict:
        return {"at": self.at, "series": [[arm, key, labels, value] for (arm, key, labels), value in
                                          sorted(self.series.items())]}

    @classmethod
    def from_dict(cls, values: dict) -> Counters:
        return cls({(arm, key, labels): float(value) for arm, key, labels, value in values["series"]},
                   float(values["at"]))

    def since(self, start: Counters, arm: str) -> ArmFigures:
        totals: dict[str, float] = {}
        buckets: dict[float, float] = {}
        for (name, key, labels), now in self.series.items():
            if name != arm:
                continue
            then = start.series.get((name, key, labels), 0.0)
            delta = now - then if key == "return_sum" or now >= then else now  # went down: restarted
            if key == "latency":
                le = float(json.loads(labels)["le"])
                buckets[le] = buckets.get(le, 0.0) + delta
            else:
                totals[key] = totals.get(key, 0.0) + delta
        requests, outcomes = int(totals.get("requests", 0)), int(totals.get("outcomes", 0))
        cumulative, latency = 0.0, []
        for le in sorted(buckets):  # restarts seen in some buckets only must not make the counts fall
            cumulative = max(cumulative, buckets[le])
            latency.append((le, cumulative))
        # series scraped a moment apart: never more failures than requests, nor right answers than outcomes
        return ArmFigures(requests, min(int(totals.get("server_errors", 0)), requests), outcomes,
                          min(int(totals.get("correct", 0)), outcomes), totals.get("return_sum", 0.0),
                          tuple(latency))


class PrometheusFigures:
    def __init__(self, spec: RolloutSpec, api: PrometheusAPI | None = None, clock=time.time):
        self.spec, self.api, self.clock = spec, api or PrometheusAPI(spec.prometheus), clock
        self.arms = {spec.baseline: "baseline", spec.candidate: "candidate"}

    def counters(self) -> Counters:
        try:
            return self._counters(self.clock())
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            raise FiguresError(f"Prometheus at {self.spec.prometheus}: {error}") from None

    def _counters(self, at: float) -> Counters:
        # model names and the histogram's name are checked by the document (names, no quotes): safe in PromQL
        names = "|".join(name.replace(".", "\\\\.") for name in self.arms)  # a '.' in a name matches only itself
        selector = f'model=~"{names}"'
        queries = {
            "requests": f"seldon_model_infer_total{{{selector}}}",
            "server_errors": f'seldon_model_infer_total{{{selector}, code=~"{SERVER_FAILURE}"}}',
            "outcomes": f"market_ab_outcomes_total{{{selector}}}",
            "correct": f"market_ab_outcomes_correct_total{{{selector}}}",
            "return_sum": f"market_ab_outcome_return_sum{{{selector}}}",
            "latency": f"{self.spec.gates.latency.histogram}_bucket{{{selector}}}",
        }
        series: dict[tuple[str, str, str], float] = {}
        for key, expr in queries.items():
            for result in self.api.query(expr, at):  # every query at the same instant
                labels = {k: v for k, v in result["metric"].items() if k != "__name__"}
                arm = self.arms[labels.pop("model")]
                series[(arm, key, json.dumps(labels, sort_keys=True))] = result["value"]
        return Counters(series, at)

    def scraped_after(self, moment: float) -> bool:
        """Whether Prometheus holds a sample of the candidate's requests taken after ``moment``."""
        latest = self.api.query(f'max(timestamp(seldon_model_infer_total{{model="{self.spec.candidate}"}}))')
        return not latest or latest[0]["value"] > moment
