"""The gateway's gRPC door: the Open Inference Protocol service, routed by ``seldon-model`` call metadata.

A plain model, or a model chosen by an experiment, is forwarded to MLServer with ``model_name`` set to the target;
a pipeline is run by the ``Gateway``. The answer's initial metadata carries ``x-request-id`` and, for an
experiment, ``x-seldon-route``. Errors keep the status MLServer or the step gave (INVALID_ARGUMENT stays
INVALID_ARGUMENT).
"""

from __future__ import annotations

import time

import grpc
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

from seldon_market_ab.protocol_types import TensorError

from .experiment import ROUTE_HEADER
from .gateway import HTTP_STATUS, REQUEST_ID, SELDON_MODEL, Gateway, GatewayError, Route, request_id
from .tensors import infer_response, request_tensors

FORWARDED = (REQUEST_ID, "traceparent", "tracestate")  # metadata a step also receives


class GrpcDoor(dataplane_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=not await self.gateway.not_ready())

    async def ServerMetadata(self, request, context):
        return await self._or_abort(context, self._backend(self.gateway.stub.ServerMetadata, request))

    async def ModelReady(self, request, context):
        route = await self._route(context, draw=False)
        if route.kind == "pipeline":
            return pb.ModelReadyResponse(ready=not await self.gateway.not_ready(route.name))
        return await self._or_abort(context, self._backend(self.gateway.stub.ModelReady,
                                                           pb.ModelReadyRequest(name=route.name)))

    async def ModelMetadata(self, request, context):
        route = await self._route(context, draw=False)
        if route.kind == "pipeline":
            error = self.gateway.pipeline_has_no_metadata(route.name)
            await context.abort(error.code, error.message)
        return await self._or_abort(context, self._backend(self.gateway.stub.ModelMetadata,
                                                           pb.ModelMetadataRequest(name=route.name)))

    async def ModelInfer(self, request, context):
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata())
        route = await self._route(context, metadata)
        try:
            rid = request_id(metadata.get(REQUEST_ID), request.id)
        except GatewayError as error:  # before any metadata goes back: the id could not travel in it
            self.gateway.observe(route, error.status, time.perf_counter() - started, "grpc", error.code)
            await context.abort(error.code, error.message)
        outgoing = tuple((k, v) for k, v in metadata.items() if k in FORWARDED and k != REQUEST_ID)
        outgoing += ((REQUEST_ID, rid),)
        sent = ((REQUEST_ID, rid),) + (((ROUTE_HEADER, route.route_value),) if route.route_value else ())
        await context.send_initial_metadata(sent)
        if route.mirror:
            self.gateway.mirror(route.experiment, lambda: self._send_copy(route, request, rid, outgoing),
                                "grpc")
        try:
            if route.kind == "model":
                answer = await self._backend(self.gateway.stub.ModelInfer, _for_model(request, route.name, rid),
                                             outgoing)
            else:
                answer = await self._run_pipeline(route.name, request, rid)
        except GatewayError as error:
            self.gateway.observe(route, error.status, time.perf_counter() - started, "grpc", error.code)
            await context.abort(error.code, error.message)
        self.gateway.observe(route, 200, time.perf_counter() - started, "grpc", grpc.StatusCode.OK)
        return answer

    async def _run_pipeline(self, name: str, request: pb.ModelInferRequest, rid: str) -> pb.ModelInferResponse:
        try:
            tensors = request_tensors(request)
        except TensorError as error:
            raise GatewayError(400, str(error)) from None
        answer = await self.gateway.run_pipeline(name, tensors, rid)
        # Seldon answers a pipeline with an empty model name; raw contents when the client sent raw contents
        return infer_response(answer, rid, raw=bool(request.raw_input_contents))

    async def _send_copy(self, route: Route, request: pb.ModelInferRequest, rid: str, metadata: tuple) -> None:
        if route.experiment.resource_type == "pipeline":
            await self._run_pipeline(route.mirror, request, rid)
        else:
            await self._backend(self.gateway.stub.ModelInfer, _for_model(request, route.mirror, rid), metadata)

    async def _route(self, context, metadata: dict | None = None, draw: bool = True) -> Route:
        metadata = metadata if metadata is not None else dict(context.invocation_metadata())
        try:
            return self.gateway.route(metadata.get(SELDON_MODEL), metadata.get(ROUTE_HEADER), draw)
        except GatewayError as error:
            self.gateway.observe("unknown", error.status, 0.0, "grpc", error.code)
            await context.abort(error.code, error.message)

    async def _backend(self, method, request, metadata: tuple = ()):
        """Call MLServer; its error becomes a GatewayError with the same code and details."""
        try:
            return await method(request, metadata=metadata, timeout=self.gateway.step_timeout)
        except grpc.aio.AioRpcError as error:
            raise GatewayError(HTTP_STATUS.get(error.code(), 500), error.details(), error.code()) from None

    @staticmethod
    async def _or_abort(context, call):
        try:
            return await call
        except GatewayError as error:
            await context.abort(error.code, error.message)


def _for_model(request: pb.ModelInferRequest, model: str, rid: str) -> pb.ModelInferRequest:
    """The request for ``model``, its id the request id every step sees (as for pipelines)."""
    if request.model_name == model and not request.model_version and request.id == rid:
        return request
    copy = pb.ModelInferRequest()
    copy.CopyFrom(request)
    copy.model_name, copy.model_version, copy.id = model, "", rid
    return copy
