"""The gateway of ``market-ab serve``: Seldon Core v2's routing in front of one MLServer, apart from HTTP and gRPC.

``Gateway.route`` reads the ``seldon-model`` header the way Seldon's Envoy does (an experiment split, a pipeline,
or a plain model), ``Gateway.run_pipeline`` executes a ``Plan`` by calling each step's model on MLServer over gRPC
with the request id as both ``x-request-id`` and the Open Inference Protocol id, and side steps (``batch.size``)
and mirrors run as background tasks that never delay or fail the response. ``rest.py`` and ``grpc_server.py`` are
the two front doors; both use this class.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import grpc
import numpy as np
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

from seldon_market_ab import metrics
from seldon_market_ab.protocol import InvalidInput, check_id
from seldon_market_ab.protocol_types import TensorError, Tensors

from .deployment import Deployment
from .experiment import Experiment
from .pipeline import Plan, RowBatcher
from .seldon_metrics import SeldonMetrics, go_code_name
from .tensors import Tensor, infer_request, response_tensors

log = logging.getLogger("market_ab.gateway")

SELDON_MODEL = "seldon-model"
REQUEST_ID = "x-request-id"
# gRPC status -> HTTP status, for a step's error answered over REST
HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
               grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
               grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
               grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501}
GRPC_CODE = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
             429: grpc.StatusCode.RESOURCE_EXHAUSTED, 501: grpc.StatusCode.UNIMPLEMENTED,
             503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
SIDE_QUEUE = 8  # batches waiting for a side step before new ones are dropped (and counted)
MIRRORS_IN_FLIGHT = 64  # copies waiting for a mirror before new ones are dropped (and counted)


class GatewayError(Exception):
    def __init__(self, status: int, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or GRPC_CODE.get(status, grpc.StatusCode.INTERNAL)


@dataclass(frozen=True)
class Route:
    kind: str  # "model" or "pipeline"
    name: str
    label: str  # what the metrics call the target: a manifest name, never a client's string
    experiment: Experiment | None = None
    route_value: str | None = None  # the x-seldon-route value of an experiment's choice
    mirror: str | None = None  # a copy goes there


def request_id(header: str | None, body_id: str | None) -> str:
    """The id every step sees: the client's ``x-request-id``, else its request id, else a new one (Seldon's Envoy
    makes one when the client sends none). GatewayError 400 for one outside the rule the models keep: it goes back
    in a header and in gRPC metadata, which cannot carry every string."""
    rid = header or body_id or uuid.uuid4().hex
    try:
        check_id(rid)
    except InvalidInput as error:
        raise GatewayError(400, str(error)) from None
    return rid


class Gateway:
    def __init__(self, deployment: Deployment, backend_grpc: str, models: set[str], seed: int | None = None,
                 step_timeout: float = 60.0):
        """``backend_grpc``: MLServer's gRPC address; ``models``: the names MLServer serves."""
        self.deployment, self.models, self.step_timeout = deployment, set(models), step_timeout
        self.backend_grpc = backend_grpc
        self._rng = np.random.default_rng(seed)
        self._batchers = {(p.name, s.name): RowBatcher(s.batch_size) for p in deployment.plans.values()
                          for s in p.side_steps}
        self._side_queues: dict[tuple[str, str], asyncio.Queue] = {}
        self._background: set[asyncio.Task] = set()
        self._mirrors = 0
        self._requests = metrics.counter("gateway_requests_total", "Requests through the local Seldon gateway, by "
                                         "target and answer", ["kind", "target", "code"])
        self._latency = metrics.histogram("gateway_request_seconds", "Time from request to answer at the gateway",
                                          ["kind", "target"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25,
                                                                       .5, 1, 2.5, 5, 10))
        self._side = metrics.counter("gateway_side_batches_total", "Batches for pipeline side steps: sent and "
                                     "answered, failed, or dropped (queue full, or tensors that do not stack)",
                                     ["pipeline", "step", "outcome"])
        self.seldon = SeldonMetrics(deployment.server)  # what Seldon's agent and pipeline gateway would export
        self._mirror_count = metrics.counter("gateway_mirror_requests_total", "Experiment mirror copies: answered, "
                                             "failed, or dropped (too many in flight)", ["experiment", "outcome"])
        self._model_seconds = metrics.CachedLabels(metrics.histogram(
            "gateway_model_seconds", "Time from request to answer of each model the gateway called: a plain model, an "
            "experiment's candidate or mirror, a pipeline step (a rollout's latency gate: Seldon's own histogram has "
            "no model label)", ["model"], buckets=metrics.LATENCY_BUCKETS))
        self._weights = metrics.gauge("gateway_experiment_weight", "Each experiment candidate's weight in force",
                                      ["experiment", "candidate"])
        self.experiment_updates = metrics.counter("gateway_experiment_updates_total", "Changes of an experiment's "
                                                  "candidates and weights through the admin port: applied or "
                                                  "rejected", ["experiment", "outcome"])
        self.generations = dict.fromkeys(deployment.experiments, 1)  # bumped by each applied change
        for experiment in deployment.experiments.values():
            self._publish_weights(experiment)

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.backend_grpc, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self.stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        for key in self._batchers:
            self._side_queues[key] = asyncio.Queue(SIDE_QUEUE)
            self._spawn(self._side_worker(*key))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._channel.close()

    # routing ---------------------------------------------------------------------------------------------------

    def replace_experiment(self, experiment: Experiment) -> int:
        """Serve ``experiment`` in place of the one of its name, from the next request on; its new generation.
        Routing reads an experiment once per request on this event loop, so a request sees the old weights or the
        new ones, never a mix; and an ``x-seldon-route`` sticks only to a candidate the new one lists above 0."""
        old = self.deployment.experiments[experiment.name]
        self.deployment.experiments[experiment.name] = experiment
        self.generations[experiment.name] += 1
        for name in {n for n, _ in old.candidates} - {n for n, _ in experiment.candidates}:
            self._weights.remove(experiment.name, name)
        self._publish_weights(experiment)
        self.experiment_updates.labels(experiment.name, "applied").inc()
        log.info("experiment %s: candidates %s (generation %d)", experiment.name,
                 ", ".join(f"{n} {w}" for n, w in experiment.candidates), self.generations[experiment.name])
        return self.generations[experiment.name]

    def add_experiment(self, experiment: Experiment) -> int:
        """Serve a new ``experiment`` from the next request on (a Seldon Experiment applied while serving)."""
        self.deployment.experiments[experiment.name] = experiment
        self.generations[experiment.name] = 1
        self._publish_weights(experiment)
        self.experiment_updates.labels(experiment.name, "applied").inc()
        log.info("experiment %s created: candidates %s%s", experiment.name,
                 ", ".join(f"{n} {w}" for n, w in experiment.candidates),
                 f", default {experiment.default}" if experiment.default else "")
        return 1

    def _publish_weights(self, experiment: Experiment) -> None:
        for name, weight in experiment.candidates:
            self._weights.labels(experiment.name, name).set(weight)

    def route(self, seldon_model: str | None, route_header: str | None = None, draw: bool = True) -> Route:
        """Where a request with this ``seldon-model`` header goes; GatewayError 404 when nowhere. ``draw=False``
        (readiness, metadata) answers for the candidate ``route_header`` sticks to, else the experiment's default, or
        first, candidate, without a random draw, so that such calls leave a seeded split as it was."""
        if not seldon_model:
            raise GatewayError(404, f"no '{SELDON_MODEL}' header: Seldon routes by it; send '{SELDON_MODEL}: "
                                    f"<model>', '<name>.pipeline' or '<name>.experiment'")
        for experiment in self.deployment.experiments.values():
            if experiment.handles(seldon_model):
                if not draw:
                    chosen = experiment.sticky(route_header) or experiment.default or experiment.candidates[0][0]
                    return Route(experiment.resource_type, chosen, f"{experiment.name}.experiment", experiment)
                chosen = experiment.choose(self._rng, route_header)
                mirror = experiment.mirror if experiment.mirrored(self._rng) else None
                return Route(experiment.resource_type, chosen, f"{experiment.name}.experiment", experiment,
                             experiment.route_value(chosen), mirror)
        name, _, suffix = seldon_model.rpartition(".")
        if suffix == "pipeline" and name in self.deployment.plans:
            return Route("pipeline", name, seldon_model)
        if suffix in ("pipeline", "experiment"):
            known = sorted([f"{p}.pipeline" for p in self.deployment.plans] +
                           [f"{e}.experiment" for e in self.deployment.experiments])
            raise GatewayError(404, f"'{seldon_model}' is not deployed; the manifests define "
                                    f"{', '.join(known) or 'no pipeline or experiment'}")
        if seldon_model not in self.models:
            raise GatewayError(404, f"model '{seldon_model}' is not in the model repository; it holds "
                                    f"{', '.join(sorted(self.models))}")
        return Route("model", seldon_model, seldon_model)

    def pipeline_has_no_metadata(self, pipeline: str) -> GatewayError:
        """What Seldon 2.10's pipeline gateway answers a metadata request with: it has no such handler (REST 404,
        gRPC UNIMPLEMENTED). Ours also says where the metadata is: on each step's model."""
        steps = ", ".join(s.name for s in self.deployment.plans[pipeline].steps)
        return GatewayError(404, f"'{pipeline}' is a pipeline: Seldon's pipeline gateway serves no model metadata; "
                                 f"ask its steps' models ({steps})", grpc.StatusCode.UNIMPLEMENTED)

    def observe(self, route_or_kind: Route | str, status: int, seconds: float, protocol: str = "rest",
                grpc_code: grpc.StatusCode | None = None) -> None:
        """One request answered at a door (``protocol`` ``rest`` or ``grpc``); ``grpc_code`` what gRPC answered."""
        kind, label = (route_or_kind.kind, route_or_kind.label) if isinstance(route_or_kind, Route) \
            else (route_or_kind, "unknown")
        self._requests.labels(kind, label, str(status)).inc()
        self._latency.labels(kind, label).observe(seconds)
        if isinstance(route_or_kind, Route):  # a request Seldon routes to a model's agent or the pipeline gateway
            self._seldon_call(route_or_kind.kind, route_or_kind.name, protocol,
                              SeldonMetrics.code(protocol, status, grpc_code), seconds)

    def _seldon_call(self, kind: str, name: str, protocol: str, code: str, seconds: float) -> None:
        if kind == "pipeline":
            self.seldon.pipeline_call(name, protocol, code, seconds)
        else:
            self.seldon.model_call(name, protocol, code, seconds)
            self._model_seconds.labels(name).observe(seconds)

    # pipelines -------------------------------------------------------------------------------------------------

    async def run_pipeline(self, name: str, tensors: Tensors[Tensor], rid: str) -> Tensors[Tensor]:
        """The pipeline's output tensors for a request's input tensors. Raises GatewayError."""
        plan = self.deployment.plans[name]

        async def call(step: str, inputs: Tensors[Tensor]) -> Tensors[Tensor]:
            return await self.call_step(plan, step, inputs, rid)

        result = await plan.run(tensors, call)
        for step, inputs in result.side_inputs.items():
            self._feed_side_step(plan, step, inputs, rid)
        if result.output is None and not result.ran:  # the request holds none of the inputs the steps read
            first = [f"{step.name} reads " + ", ".join(r.qualified(r.tensor) if r.tensor else r.topic
                                                        for r in step.inputs)
                     for step in plan.steps if any(r.source == name for r in step.inputs)]
            raise GatewayError(400, f"pipeline '{name}' ran no step: the request holds "
                                    f"{', '.join(sorted(tensors)) or 'no input'}, and {'; '.join(first)}")
        if result.output is None:  # every step answered, but the request's path never reached the output: it lacked
            # a tensor the output needs, or was a message the steps answer without routing (a router's feedback)
            raise GatewayError(400, f"pipeline '{name}' produced no output: its output takes "
                                    f"{', '.join(r.source for r in plan.output)} ({plan.output_join} join), and "
                                    f"the steps that ran were {', '.join(result.ran) or 'none'}")
        return result.output

    async def call_step(self, plan: Plan, step: str, inputs: Tensors[Tensor], rid: str) -> Tensors[Tensor]:
        started = time.perf_counter()
        try:
            response = await self.stub.ModelInfer(infer_request(step, inputs, rid), metadata=((REQUEST_ID, rid),),
                                                  timeout=self.step_timeout)
            self._seldon_call("model", step, "grpc", "OK", time.perf_counter() - started)  # a step is a gRPC call
        except grpc.aio.AioRpcError as error:
            self._seldon_call("model", step, "grpc", go_code_name(error.code()), time.perf_counter() - started)
            status = HTTP_STATUS.get(error.code(), 500)
            raise GatewayError(status, f"pipeline '{plan.name}', step '{step}': {error.details()}",
                               error.code() if status != 500 else grpc.StatusCode.INTERNAL) from None
        try:
            return response_tensors(response)
        except TensorError as error:
            raise GatewayError(500, f"pipeline '{plan.name}', step '{step}' answered a malformed tensor: "
                                    f"{error}") from None

    # side steps: batched, one batch in flight per step, off the response path -------------------------------------

    def _feed_side_step(self, plan: Plan, step: str, inputs: Tensors[Tensor], rid: str) -> None:
        try:
            batch = self._batchers[plan.name, step].add({n: t.array() for n, t in inputs.items()})
        except (ValueError, TypeError) as error:
            log.warning("pipeline %s, side step %s: request %s left out of the batch: %s", plan.name, step, rid, error)
            self._side.labels(plan.name, step, "dropped").inc()
            return
        if batch is None:
            return
        datatypes = {n: t.datatype for n, t in inputs.items()}
        try:
            self._side_queues[plan.name, step].put_nowait(({n: Tensor.from_array(a, datatypes[n])
                                                            for n, a in batch.items()}, rid))
        except asyncio.QueueFull:
            log.warning("pipeline %s, side step %s: %d batches already waiting; batch dropped", plan.name, step,
                        SIDE_QUEUE)
            self._side.labels(plan.name, step, "dropped").inc()

    async def _side_worker(self, pipeline: str, step: str) -> None:
        plan, queue = self.deployment.plans[pipeline], self._side_queues[pipeline, step]
        while True:
            inputs, rid = await queue.get()
            try:
                await self.call_step(plan, step, inputs, rid)
                self._side.labels(pipeline, step, "answered").inc()
            except GatewayError as error:
                log.warning("side step failed: %s", error.message)
                self._side.labels(pipeline, step, "failed").inc()
            except Exception:  # noqa: BLE001 - the worker must outlive any one batch
                log.exception("pipeline %s, side step %s: batch failed", pipeline, step)
                self._side.labels(pipeline, step, "failed").inc()

    # mirrors -----------------------------------------------------------------------------------------------------

    def mirror(self, experiment: Experiment, send, protocol: str) -> None:
        """Run ``send()`` (a coroutine function that raises GatewayError on failure) in the background; its answer is
        dropped. Seldon counts the copy under the mirror's name."""
        if self._mirrors >= MIRRORS_IN_FLIGHT:
            self._mirror_count.labels(experiment.name, "dropped").inc()
            return

        self._mirrors += 1  # counted before the task starts, so that a burst cannot pass the limit
        kind = "pipeline" if experiment.resource_type == "pipeline" else "model"

        async def run() -> None:
            started, status, code = time.perf_counter(), 200, None
            try:
                await send()
                self._mirror_count.labels(experiment.name, "answered").inc()
            except Exception as error:  # noqa: BLE001 - a mirror's failure is counted, never the client's
                log.info("mirror of experiment %s failed: %s", experiment.name, error)
                self._mirror_count.labels(experiment.name, "failed").inc()
                status, code = (error.status, error.code) if isinstance(error, GatewayError) \
                    else (500, grpc.StatusCode.INTERNAL)
            finally:
                self._mirrors -= 1
            self._seldon_call(kind, experiment.mirror, protocol, SeldonMetrics.code(protocol, status, code),
                              time.perf_counter() - started)

        self._spawn(run())

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # readiness ---------------------------------------------------------------------------------------------------

    async def ready_models(self) -> set[str]:
        """The models MLServer reports ready (it answers NOT_FOUND for an unloaded one)."""
        async def ready(name: str) -> bool:
            try:
                return (await self.stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=5)).ready
            except grpc.aio.AioRpcError:
                return False

        names = sorted(self.models)
        return {name for name, ok in zip(names, await asyncio.gather(*map(ready, names)), strict=True) if ok}

    async def not_ready(self, pipeline: str | None = None) -> list[str]:
        """What keeps the gateway (or one pipeline) from being ready: models MLServer does not report ready."""
        wanted = {s.name for s in self.deployment.plans[pipeline].steps} if pipeline else self.models
        return sorted(wanted - await self.ready_models())
