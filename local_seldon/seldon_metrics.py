"""The metric families Seldon Core 2.10 exports, as the local gateway's requests would produce them on a cluster, so
that one set of alert rules and one dashboard (``manifests/base/monitoring``) serve both.

Names, label names and buckets follow Seldon's source: the agent beside each inference server
(``scheduler/pkg/metrics/agent.go``) and the pipeline gateway (``scheduler/pkg/metrics/gateway.go``):

- ``seldon_model_infer_api_seconds{server, server_replica, method, code}``: every call the agent proxies to the
  server, by method (``post`` over REST, ``grpc``) and code; it has no model label.
- ``seldon_model_infer_total`` / ``seldon_model_infer_seconds_total`` ``{server, server_replica, model,
  model_internal, method_type, code}``: per model (an experiment's candidate and its mirror under their own names, a
  pipeline's steps as the gRPC calls they are), and their aggregates ``seldon_model_aggregate_infer_*``.
- ``seldon_pipeline_infer_api_seconds{server="pipeline-gateway", pipeline, method, code}``, the counters
  ``seldon_pipeline_infer_total`` / ``seldon_pipeline_infer_seconds_total`` ``{server, pipeline, method_type,
  code}`` and their aggregates.

Codes are the HTTP status as text over REST and Go's gRPC code names (``OK``, ``InvalidArgument``) over gRPC. One
difference: Seldon's pipeline gateway records a failed REST request as 500 whatever went wrong; this one records the
status it answered.
"""

from __future__ import annotations

import grpc
from prometheus_client import Counter, Histogram

from seldon_market_ab.mlserver_compat import registered_collector

# DefaultHistogramBuckets of scheduler/pkg/metrics/agent.go, shared by the pipeline gateway
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
PIPELINE_GATEWAY = "pipeline-gateway"
MODEL_GENERATION = "1"  # model_internal is <model>_<generation of the Model resource>; here every Model is new
GO_CODE_NAMES = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


def go_code_name(code: grpc.StatusCode) -> str:
    """``grpc.StatusCode.INVALID_ARGUMENT`` -> ``InvalidArgument``, as Go's ``codes.Code.String()`` spells it."""
    return GO_CODE_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


def _metric(kind, name: str, documentation: str, labels: list[str], **kwargs):
    """Created once per process (the gateway may be built more than once, in tests)."""
    return registered_collector(name) or kind(name, documentation, labels, **kwargs)


class SeldonMetrics:
    def __init__(self, server: str = "mlserver", server_replica: str = "0"):
        self.server, self.replica = server, server_replica
        self.model_seconds = _metric(Histogram, "seldon_model_infer_api_seconds",
                                     "A histogram of latencies for inference server",
                                     ["server", "server_replica", "method", "code"], buckets=BUCKETS)
        per_model = ["server", "server_replica", "model", "model_internal", "method_type", "code"]
        self.model_count = _metric(Counter, "seldon_model_infer", "A count of server inference calls", per_model)
        self.model_latency = _metric(Counter, "seldon_model_infer_seconds", "A sum of server inference call latencies",
                                     per_model)
        aggregate = ["server", "server_replica", "method_type"]
        self.aggregate_count = _metric(Counter, "seldon_model_aggregate_infer",
                                       "A count of server inference calls (aggregate)", aggregate)
        self.aggregate_latency = _metric(Counter, "seldon_model_aggregate_infer_seconds",
                                         "A sum of server inference call latencies (aggregate)", aggregate)
        self.pipeline_seconds = _metric(Histogram, "seldon_pipeline_infer_api_seconds",
                                        "A histogram of latencies for pipeline gateway",
                                        ["server", "pipeline", "method", "code"], buckets=BUCKETS)
        per_pipeline = ["server", "pipeline", "method_type", "code"]
        self.pipeline_count = _metric(Counter, "seldon_pipeline_infer", "A count of pipeline gateway calls",
                                      per_pipeline)
        self.pipeline_latency = _metric(Counter, "seldon_pipeline_infer_seconds",
                                        "A sum of pipeline gateway call latencies", per_pipeline)
        aggregate = ["server", "method_type"]
        self.pipeline_aggregate_count = _metric(Counter, "seldon_pipeline_aggregate_infer",
                                                "A count of pipeline gateway calls (aggregate)", aggregate)
        self.pipeline_aggregate_latency = _metric(Counter, "seldon_pipeline_aggregate_infer_seconds",
                                                  "A sum of pipeline gateway call latencies (aggregate)", aggregate)

    @staticmethod
    def code(protocol: str, status: int, grpc_code: grpc.StatusCode | None = None) -> str:
        """The ``code`` label: the HTTP status over REST, Go's name of the gRPC code over gRPC."""
        if protocol == "rest":
            return str(status)
        return go_code_name(grpc_code or (grpc.StatusCode.OK if status == 200 else grpc.StatusCode.UNKNOWN))

    def model_call(self, model: str, protocol: str, code: str, seconds: float) -> None:
        """A call the agent of ``model``'s server proxied: ``protocol`` ``rest`` or ``grpc``."""
        method = "post" if protocol == "rest" else "grpc"  # the REST handler's method label, lower case
        self.model_seconds.labels(self.server, self.replica, method, code).observe(seconds)
        labels = (self.server, self.replica, model, f"{model}_{MODEL_GENERATION}", protocol, code)
        self.model_count.labels(*labels).inc()
        self.model_latency.labels(*labels).inc(seconds)
        self.aggregate_count.labels(self.server, self.replica, protocol).inc()
        self.aggregate_latency.labels(self.server, self.replica, protocol).inc(seconds)

    def pipeline_call(self, pipeline: str, protocol: str, code: str, seconds: float) -> None:
        self.pipeline_seconds.labels(PIPELINE_GATEWAY, pipeline, protocol, code).observe(seconds)
        self.pipeline_count.labels(PIPELINE_GATEWAY, pipeline, protocol, code).inc()
        self.pipeline_latency.labels(PIPELINE_GATEWAY, pipeline, protocol, code).inc(seconds)
        self.pipeline_aggregate_count.labels(PIPELINE_GATEWAY, protocol).inc()
        self.pipeline_aggregate_latency.labels(PIPELINE_GATEWAY, protocol).inc(seconds)
