"""Prometheus metrics that appear on MLServer's ``/metrics`` with or without parallel workers.

MLServer serves the default ``prometheus_client`` registry when ``parallel_workers``
is 0, and aggregates the workers' multiprocess files otherwise; metrics created on
the default registry reach both. MLServer imports a runtime module more than once,
so a metric is created on first use and looked up afterwards, never defined at
module level. Label values come from settings and fixed sets, never from requests.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from .mlserver_compat import registered_collector

PREFIX = "market_ab_"
# Request latency buckets fine enough for a p99 guardrail (each 25% above the last, 1 ms to 11.8 s): Seldon's own
# (5, 10, 25, 50 ms ...) cannot tell 20 ms from 45 ms.
LATENCY_BUCKETS = tuple(round(0.001 * 1.25**i, 6) for i in range(43))


def _get_or_create(kind, name: str, documentation: str, labelnames, **kwargs):
    existing = registered_collector(name)
    if existing is not None:
        return existing
    try:
        return kind(name, documentation, labelnames, **kwargs)
    except ValueError:  # created meanwhile by another import of this module
        return registered_collector(name)


def counter(name: str, documentation: str, labelnames) -> Counter:
    return _get_or_create(Counter, PREFIX + name, documentation, labelnames)


def histogram(name: str, documentation: str, labelnames, buckets) -> Histogram:
    return _get_or_create(Histogram, PREFIX + name, documentation, labelnames, buckets=buckets)


def gauge(name: str, documentation: str, labelnames, multiprocess_mode: str = "mostrecent") -> Gauge:
    return _get_or_create(Gauge, PREFIX + name, documentation, labelnames, multiprocess_mode=multiprocess_mode)


class CachedLabels:
    """A metric whose children are looked up once per label values. prometheus-client's ``labels()`` validates and
    takes a lock on every call, which a router pays several times per request; label values here come from a bounded
    set (arms, outcomes, reasons), so the cache stays small."""

    __slots__ = ("metric", "_children")

    def __init__(self, metric):
        self.metric, self._children = metric, {}

    def labels(self, *values):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


def cached(metrics: dict) -> dict:
    """Each metric of ``metrics`` with its children cached."""
    return {name: CachedLabels(metric) for name, metric in metrics.items()}
