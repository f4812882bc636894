"""The gateway's REST door (aiohttp): Seldon's paths, routed by the ``seldon-model`` header.

A plain model, or a model chosen by an experiment, is proxied to MLServer's REST server byte for byte (the path's
model name replaced by the target's, as Seldon's Envoy rewrites it); a pipeline's request is decoded and run by the
``Gateway``. ``/v2/health/ready`` is the gateway's own: 200 only when every model is ready.
"""

from __future__ import annotations

import time

import aiohttp
import orjson
import pydantic
from aiohttp import web
from mlserver.types import InferenceRequest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .experiment import ROUTE_HEADER
from .gateway import REQUEST_ID, SELDON_MODEL, Gateway, GatewayError, Route, request_id
from .tensors import Tensor, TensorError

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


def error_response(status: int, message: str, rid: str | None = None) -> web.Response:
    """MLServer's error body, so clients parse one shape whether the gateway or a model answered."""
    return web.json_response({"error": message}, status=status, headers={REQUEST_ID: rid} if rid else None)


class RestDoor:
    def __init__(self, gateway: Gateway, backend_http: str):
        self.gateway, self.backend_http = gateway, backend_http.rstrip("/")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/v2/health/live", self.live)
        app.router.add_get("/v2/health/ready", self.ready)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v2", self.proxy_server)
        for prefix in ("/v2/models/{name}", "/v2/pipelines/{name}"):
            app.router.add_post(prefix + "/infer", self.infer)
            app.router.add_post(prefix + "/versions/{version}/infer", self.infer)
            app.router.add_get(prefix + "/ready", self.model_ready)
            app.router.add_get(prefix, self.model_metadata)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.gateway.step_timeout))

    async def _close(self, _app) -> None:
        await self.session.close()

    async def live(self, _request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, _request: web.Request) -> web.Response:
        missing = await self.gateway.not_ready()
        if missing:
            return error_response(503, f"not ready: {', '.join(missing)}")
        return web.json_response({"ready": True})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def proxy_server(self, request: web.Request) -> web.Response:
        return await self._forward(request, "GET", "/v2")

    async def model_ready(self, request: web.Request) -> web.Response:
        try:
            route = self.gateway.route(request.headers.get(SELDON_MODEL), draw=False)
        except GatewayError as error:
            return error_response(error.status, error.message)
        if route.kind == "pipeline":
            missing = await self.gateway.not_ready(route.name)
            # Seldon answers a pipeline that is not ready with 424 Failed Dependency
            return error_response(424, f"not ready: {', '.join(missing)}") if missing else web.Response(status=200)
        return await self._forward(request, "GET", f"/v2/models/{route.name}/ready")

    async def model_metadata(self, request: web.Request) -> web.Response:
        try:
            route = self.gateway.route(request.headers.get(SELDON_MODEL), draw=False)
        except GatewayError as error:
            return error_response(error.status, error.message)
        if route.kind == "pipeline":
            return web.json_response({"name": route.name, "platform": "seldon-pipeline",
                                      "steps": [s.name for s in self.gateway.deployment.plans[route.name].steps]})
        return await self._forward(request, "GET", f"/v2/models/{route.name}")

    async def infer(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await request.read()
        rid = request.headers.get(REQUEST_ID)
        try:
            route = self.gateway.route(request.headers.get(SELDON_MODEL), request.headers.get(ROUTE_HEADER))
        except GatewayError as error:
            self.gateway.observe("unknown", error.status, time.perf_counter() - started)
            return error_response(error.status, error.message, rid)
        if route.kind == "model":
            body, rid = _with_request_id(body, rid)
        response = await self._infer(route, request, body, rid)
        if route.route_value:
            response.headers[ROUTE_HEADER] = route.route_value
        if route.mirror:
            rid = response.headers.get(REQUEST_ID) or request_id(None, None)
            self.gateway.mirror(route.experiment, lambda: self._send_copy(route, body, rid))
        self.gateway.observe(route, response.status, time.perf_counter() - started)
        return response

    async def _infer(self, route: Route, request: web.Request, body: bytes, rid: str | None) -> web.Response:
        if route.kind == "model":
            response = await self._forward(request, "POST", f"/v2/models/{route.name}/infer", body, rid)
            response.headers[REQUEST_ID] = rid
            return response
        try:
            payload = InferenceRequest.model_validate_json(body)
            tensors = {i.name: Tensor.from_json(i) for i in payload.inputs}
        except pydantic.ValidationError as error:
            return error_response(400, f"not an Open Inference Protocol request: {_first_error(error)}", rid)
        except TensorError as error:
            return error_response(400, str(error), rid)
        rid = request_id(rid, payload.id)
        try:
            answer = await self.gateway.run_pipeline(route.name, tensors, rid)
        except GatewayError as error:
            return error_response(error.status, error.message, rid)
        # Seldon answers a pipeline with an empty model name
        body = orjson.dumps({"model_name": "", "id": rid, "outputs": [t.json(n) for n, t in answer.items()]})
        return web.Response(body=body, content_type="application/json", headers={REQUEST_ID: rid})

    async def _send_copy(self, route: Route, body: bytes, rid: str) -> None:
        if route.experiment.resource_type == "pipeline":
            payload = InferenceRequest.model_validate_json(body)
            await self.gateway.run_pipeline(route.mirror, {i.name: Tensor.from_json(i) for i in payload.inputs}, rid)
            return
        async with self.session.post(f"{self.backend_http}/v2/models/{route.mirror}/infer", data=body,
                                     headers={"Content-Type": "application/json", REQUEST_ID: rid}) as answer:
            if answer.status != 200:
                raise RuntimeError(f"{route.mirror} answered {answer.status}: {(await answer.text())[:200]}")

    async def _forward(self, request: web.Request, method: str, path: str, body: bytes | None = None,
                       rid: str | None = None) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if rid:
            headers[REQUEST_ID] = rid
        try:
            async with self.session.request(method, self.backend_http + path, data=body, headers=headers) as answer:
                content = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=answer.status, body=content, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as error:
            return error_response(503, f"MLServer did not answer: {error or type(error).__name__}", rid)


def _with_request_id(body: bytes, header: str | None) -> tuple[bytes, str]:
    """The body with its Open Inference Protocol id set to the request id (the ``x-request-id`` header, else the
    body's id, else a new one), as for pipelines: the model (a router's decision id) and the response header then
    agree. A body that is not a JSON object goes on as it is, for MLServer to refuse."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, header or request_id(None, None)
    if not isinstance(payload, dict):
        return body, header or request_id(None, None)
    body_id = payload.get("id") if isinstance(payload.get("id"), str) and payload.get("id") else None
    rid = request_id(header, body_id)
    if body_id == rid:
        return body, rid
    payload["id"] = rid
    return orjson.dumps(payload), rid


def _first_error(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"
