"""The gateway's REST door (aiohttp): Seldon's paths, routed by the ``seldon-model`` header.

A plain model, or a model chosen by an experiment, is proxied to MLServer's REST server byte for byte (the path's
model name replaced by the target's, as Seldon's Envoy rewrites it); a pipeline's request is decoded and run by the
``Gateway``. Bodies are JSON whatever their Content-Type, or JSON followed by tensor bytes (the binary data
extension, ``seldon_market_ab.binary_data``), which a pipeline reads without decoding the numbers and answers in
kind. ``/v2/health/ready`` is the gateway's own: 200 only when every model is ready.
"""

from __future__ import annotations

import time

import aiohttp
import orjson
import pydantic
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from seldon_market_ab.binary_data import HEADER, BinaryOutputs, read_request, request_error, write_response
from seldon_market_ab.protocol_types import TensorError, Tensors

from .experiment import ROUTE_HEADER
from .gateway import REQUEST_ID, SELDON_MODEL, Gateway, GatewayError, Route, request_id
from .tensors import Tensor, rest_request

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
BODY_HEADERS = {"content-type", HEADER.lower()}  # set by the gateway on what it forwards: its body may be rewritten


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
            route = self.gateway.route(request.headers.get(SELDON_MODEL), request.headers.get(ROUTE_HEADER), draw=False)
        except GatewayError as error:
            return error_response(error.status, error.message)
        if route.kind == "pipeline":
            missing = await self.gateway.not_ready(route.name)
            # Seldon answers a pipeline that is not ready with 424 Failed Dependency
            return error_response(424, f"not ready: {', '.join(missing)}") if missing else web.Response(status=200)
        return await self._forward(request, "GET", f"/v2/models/{route.name}/ready")

    async def model_metadata(self, request: web.Request) -> web.Response:
        try:
            route = self.gateway.route(request.headers.get(SELDON_MODEL), request.headers.get(ROUTE_HEADER), draw=False)
        except GatewayError as error:
            return error_response(error.status, error.message)
        if route.kind == "pipeline":
            error = self.gateway.pipeline_has_no_metadata(route.name)
            return error_response(error.status, error.message)
        return await self._forward(request, "GET", f"/v2/models/{route.name}")

    async def infer(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body, length = await request.read(), request.headers.get(HEADER)
        rid = request.headers.get(REQUEST_ID)
        try:
            route = self.gateway.route(request.headers.get(SELDON_MODEL), request.headers.get(ROUTE_HEADER))
        except GatewayError as error:
            self.gateway.observe("unknown", error.status, time.perf_counter() - started)
            return error_response(error.status, error.message, rid)
        try:
            if route.kind == "model":
                body, length, rid = _with_request_id(body, length, rid)
        except GatewayError as error:  # an id that cannot travel back in a header: not echoed
            self.gateway.observe(route, error.status, time.perf_counter() - started)
            return error_response(error.status, error.message)
        response = await self._infer(route, request, body, length, rid)
        if route.route_value:
            response.headers[ROUTE_HEADER] = route.route_value
        if route.mirror:
            rid = response.headers.get(REQUEST_ID) or request_id(None, None)
            self.gateway.mirror(route.experiment, lambda: self._send_copy(route, body, length, rid), "rest")
        self.gateway.observe(route, response.status, time.perf_counter() - started)
        return response

    async def _infer(self, route: Route, request: web.Request, body: bytes, length: str | None,
                     rid: str | None) -> web.Response:
        if route.kind == "model":
            response = await self._forward(request, "POST", f"/v2/models/{route.name}/infer", body, rid, length)
            response.headers[REQUEST_ID] = rid
            return response
        try:
            body_id, tensors, wanted = _pipeline_request(body, length)
            rid = request_id(rid, body_id)
        except GatewayError as error:
            return error_response(error.status, error.message)
        try:
            answer = await self.gateway.run_pipeline(route.name, tensors, rid)
        except GatewayError as error:
            return error_response(error.status, error.message, rid)
        # Seldon answers a pipeline with an empty model name
        outputs = [t.json(n, data=not wanted.wants(n)) for n, t in answer.items()]
        body, length = write_response({"model_name": "", "id": rid, "outputs": outputs},
                                      {n: t.raw for n, t in answer.items() if wanted.wants(n)})
        if length is None:
            return web.Response(body=body, content_type="application/json", headers={REQUEST_ID: rid})
        return web.Response(body=body, content_type="application/octet-stream",
                            headers={REQUEST_ID: rid, HEADER: str(length)})

    async def _send_copy(self, route: Route, body: bytes, length: str | None, rid: str) -> None:
        if route.experiment.resource_type == "pipeline":
            await self.gateway.run_pipeline(route.mirror, _pipeline_request(body, length)[1], rid)
            return
        async with self.session.post(f"{self.backend_http}/v2/models/{route.mirror}/infer", data=body,
                                     headers=_body_headers(length, {REQUEST_ID: rid})) as answer:
            if answer.status != 200:
                raise GatewayError(answer.status, f"{route.mirror} answered {answer.status}: "
                                                  f"{(await answer.text())[:200]}")

    async def _forward(self, request: web.Request, method: str, path: str, body: bytes | None = None,
                       rid: str | None = None, length: str | None = None) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | BODY_HEADERS}
        if body is not None:
            headers = _body_headers(length, headers)
        if rid:
            headers[REQUEST_ID] = rid
        try:
            async with self.session.request(method, self.backend_http + path, data=body, headers=headers) as answer:
                content = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=answer.status, body=content, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as error:
            return error_response(503, f"MLServer did not answer: {error or type(error).__name__}", rid)


def _body_headers(length: str | None, headers: dict) -> dict:
    """What a forwarded body says of itself: JSON, or JSON and tensor bytes (and how long the JSON is)."""
    if length is None:
        return {**headers, "Content-Type": "application/json"}
    return {**headers, "Content-Type": "application/octet-stream", HEADER: length}


def _pipeline_request(body: bytes, length: str | None) -> tuple[str | None, Tensors[Tensor], BinaryOutputs]:
    """A pipeline request's id, input tensors (binary ones as their bytes) and the outputs wanted as bytes."""
    try:
        parsed = read_request(body, length)
        wanted = BinaryOutputs.of(parsed.request)
        body_id, tensors = rest_request(parsed)
    except pydantic.ValidationError as error:
        raise GatewayError(400, f"not an inference request: {request_error(error.errors())}") from None
    except TensorError as error:
        raise GatewayError(400, str(error)) from None
    except (TypeError, AttributeError) as error:  # a shape no check above foresaw: still the body's fault
        raise GatewayError(400, f"not an inference request: {type(error).__name__}: {error}") from None
    return body_id, tensors, wanted


def _with_request_id(body: bytes, length: str | None, header: str | None) -> tuple[bytes, str | None, str]:
    """The body with its Open Inference Protocol id set to the request id (the ``x-request-id`` header, else the
    body's id, else a new one), as for pipelines: the model (a router's decision id) and the response header then
    agree. Only the JSON is rewritten (with the binary data extension, its new length goes in the header). A body
    whose JSON is not an object goes on as it is, for MLServer to refuse."""
    try:
        end = len(body) if length is None else int(length)
        payload = orjson.loads(body[:end]) if 0 < end <= len(body) else None
    except (orjson.JSONDecodeError, ValueError):
        payload = None
    if not isinstance(payload, dict):
        return body, length, header or request_id(None, None)
    body_id = payload.get("id") if isinstance(payload.get("id"), str) and payload.get("id") else None
    rid = request_id(header, body_id)
    if body_id == rid:
        return body, length, rid
    payload["id"] = rid
    head = orjson.dumps(payload)
    return head + body[end:], None if length is None else str(len(head)), rid
