"""Every use of a private or undocumented MLServer or prometheus-client detail, in one place.

Each function here leans on something the installed versions do but do not promise.
``tests/unit/test_mlserver_compat.py`` pins the versions below and checks each detail, so an
upgrade fails there, loudly and by name, instead of somewhere in serving.
"""

from __future__ import annotations

import math
import struct
import zlib
from contextlib import asynccontextmanager
from contextvars import ContextVar
from importlib.metadata import version

import grpc
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from prometheus_client import REGISTRY

from .binary_data import HEADER, BinaryOutputs, binary_response, read_request, request_error, with_data
from .protocol_types import ITEM_SIZES, TensorError, check_shape

CHECKED_VERSIONS = {"mlserver": "1.7.1", "prometheus-client": "0.26.0", "fastapi": "0.115.14",
                    "starlette": "0.46.2"}


def unchecked_versions() -> dict[str, str]:
    """Installed versions that differ from the ones this module was checked against."""
    return {name: version(name) for name, checked in CHECKED_VERSIONS.items() if version(name) != checked}


def registered_collector(name: str):
    """The collector registered under ``name`` on the default registry, or None.

    prometheus-client has no public lookup; MLServer imports a runtime module more than
    once, so metrics must be found again rather than created twice.
    """
    return REGISTRY._names_to_collectors.get(name)


def request_headers(payload: InferenceRequest) -> dict[str, str]:
    """HTTP headers or gRPC metadata of a request, which MLServer copies into ``parameters.headers``."""
    return dict((payload.parameters and payload.parameters.headers) or {})


def response_from_grpc(response) -> InferenceResponse:
    """MLServer's own conversion of a gRPC ``ModelInferResponse`` into its pydantic type (clients use it)."""
    from mlserver.grpc.converters import ModelInferResponseConverter

    return ModelInferResponseConverter.to_types(response)


# Patches -------------------------------------------------------------------------------------------------------
# MLServer answers some malformed requests with INTERNAL / 500 and labels its request metrics with any model name
# a URL carries. Each patch below replaces one private function with a version that answers a client error, is
# idempotent, and is checked by tests/unit/test_mlserver_compat.py against the installed MLServer.

UNAVAILABLE = 503  # retryable: the model is loading, or its state store is out


def check_raw_contents(request) -> None:
    """Reject a gRPC request whose ``raw_input_contents`` MLServer's converter would trip over (``struct.error``,
    ``IndexError``, ``KeyError``: answered INTERNAL): too few buffers, an unknown datatype, a negative dimension, or a
    buffer whose length does not match the declared shape."""
    if not request.raw_input_contents:
        return
    needing = [tensor for tensor in request.inputs if not tensor.contents.ListFields()]
    if len(request.raw_input_contents) < len(needing):
        raise MLServerError(f"{len(needing)} inputs carry no typed contents but {len(request.raw_input_contents)} "
                            "raw_input_contents buffers were sent; send one buffer per input", status_code=400)
    for tensor, raw in zip(needing, request.raw_input_contents, strict=False):
        try:
            check_shape(f"input '{tensor.name}'", list(tensor.shape))
        except TensorError as error:
            raise MLServerError(str(error), status_code=400) from None
        if tensor.datatype == "BYTES":
            continue
        size = ITEM_SIZES.get(tensor.datatype)
        if size is None:
            raise MLServerError(f"input '{tensor.name}' has datatype {tensor.datatype!r}; raw contents need one of "
                                f"{', '.join(ITEM_SIZES)} or BYTES", status_code=400)
        expected = size * math.prod(tensor.shape)  # Python integers: no overflow, no numpy call per request
        if len(raw) != expected:
            raise MLServerError(f"input '{tensor.name}' {tensor.datatype} {list(tensor.shape)} needs {expected} bytes "
                                f"of raw contents, got {len(raw)}", status_code=400)


def install_patches() -> None:
    """Install every patch (idempotent). Runtime modules call this when they are imported, which MLServer does in
    its main process too, where requests are converted and metrics labelled."""
    from mlserver import errors
    from mlserver.grpc import converters
    from mlserver.grpc import utils as grpc_utils
    from mlserver.handlers import dataplane

    grpc_utils.STATUS_CODE_MAPPING[UNAVAILABLE] = grpc.StatusCode.UNAVAILABLE
    if not getattr(errors.ModelNotReady, "_market_ab_patched", False):
        not_ready_init = errors.ModelNotReady.__init__

        def retryable_not_ready(self, name, version=None):
            not_ready_init(self, name, version)
            self.status_code = UNAVAILABLE  # a client error (400) would tell clients not to retry

        errors.ModelNotReady.__init__ = retryable_not_ready
        errors.ModelNotReady._market_ab_patched = True

    converter = converters.ModelInferRequestConverter
    if not getattr(converter.to_types, "_market_ab_patched", False):
        to_types = converter.to_types

        def checked_to_types(pb_object):
            check_raw_contents(pb_object)
            try:
                return to_types(pb_object)
            except (ValueError, TypeError, KeyError, IndexError, struct.error) as error:  # pydantic's errors too
                raise MLServerError(f"malformed request: {type(error).__name__}: {str(error)[:300]}",
                                    status_code=400) from None

        checked_to_types._market_ab_patched = True
        converter.to_types = staticmethod(checked_to_types)

    plane = dataplane.DataPlane
    if not getattr(plane._infer_contextmanager, "_market_ab_patched", False):
        plane._infer_contextmanager = _infer_contextmanager_bounded
    _install_rest_patches()


@asynccontextmanager
async def _infer_contextmanager_bounded(self, name: str, version: str | None = None):
    """``DataPlane._infer_contextmanager`` that looks the model up before labelling request metrics with its name,
    so that requests to models that do not exist add no series (MLServer labels first, then looks)."""
    from mlserver.context import model_context
    from mlserver.errors import ModelNotReady

    model = await self._model_registry.get_model(name, version)  # ModelNotFound (404) for unknown names
    infer_duration = self._ModelInferRequestDuration.labels(model=name, version=version).time()
    infer_errors = self._ModelInferRequestFailure.labels(model=name, version=version).count_exceptions()
    with infer_duration, infer_errors:
        if not model.ready:
            raise ModelNotReady(name, version)
        with model_context(model.settings):
            yield model
        self._ModelInferRequestSuccess.labels(model=name, version=version).inc()


_infer_contextmanager_bounded._market_ab_patched = True


# REST bodies as the protocol has them --------------------------------------------------------------------------------
# MLServer's REST server reads a body as JSON only with no Content-Type or a JSON one (KServe's SDK sends
# application/octet-stream with binary tensors, some clients text/plain), knows nothing of the binary data extension,
# and answers a body that does not parse or validate with FastAPI's 422 {"detail": [...]}. Its routes build their
# request with ``mlserver.rest.app.Request``, looked up on every request, and answer with
# ``mlserver.rest.responses.Response``: replacing the one and patching the other works on an app that already runs,
# which it does by the time MLServer imports a runtime module.

_BINARY_OUTPUTS: ContextVar[BinaryOutputs | None] = ContextVar("market_ab_binary_outputs", default=None)
_JSON = (b"content-type", b"application/json")
_HEADER = HEADER.lower().encode()


def _install_rest_patches() -> None:
    from mlserver.rest import app, responses

    if not getattr(app.Request, "_market_ab_patched", False):
        app.Request = _protocol_request(app.Request)
    response = responses.Response
    if not getattr(response.render, "_market_ab_patched", False):
        response.render = _render_binary_outputs(response.render)
        response.init_headers = _with_binary_header(response.init_headers)


class BodyError(MLServerError, HTTPException):
    """A body that is not an inference request: 400 in the protocol's ``{"error": ...}`` shape (MLServer's handler,
    found first in this class's MRO). Also an ``HTTPException``, the one kind FastAPI lets out of its body parsing
    unchanged. Initialised by hand: the two bases' constructors do not cooperate."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.status_code, self.detail, self.headers = 400, message, None

    def __str__(self) -> str:
        return self.detail


def _protocol_request(base: type) -> type:
    class ProtocolRequest(base):
        """MLServer's request, read as the protocol says: JSON whatever the Content-Type, the binary data
        extension decoded into ``data`` lists, and the outputs a client wants as bytes remembered for the answer."""

        _market_ab_patched = True

        def __init__(self, scope, *args):
            _answer_validation_errors_in_protocol_shape(scope)
            headers = scope.get("headers") or []
            self._binary_length = next((v.decode("latin-1") for k, v in headers if k == _HEADER), None)
            if _is_inference(scope):  # FastAPI parses a body as JSON only with no, or a JSON, Content-Type
                scope["headers"] = [(k, v) for k, v in headers if k not in (b"content-type", _HEADER)] + [_JSON]
            super().__init__(scope, *args)

        async def body(self) -> bytes:
            try:
                return await super().body()
            except (OSError, EOFError, zlib.error) as error:  # Content-Encoding: gzip over bytes that are not
                raise BodyError(f"the body is not gzip as its Content-Encoding says: {error}") from None

        async def json(self):
            if not hasattr(self, "_json"):
                try:
                    body = read_request(await self.body(), self._binary_length)
                    wanted = BinaryOutputs.of(body.request)
                    self._json = with_data(body)
                except TensorError as error:
                    raise BodyError(str(error)) from None
                except (TypeError, AttributeError, KeyError) as error:  # a shape no check foresaw: the body's fault
                    raise BodyError(f"not an inference request: {type(error).__name__}: {error}") from None
                if wanted.any:
                    _BINARY_OUTPUTS.set(wanted)  # this request's own context: each request runs in its own task
            return self._json

    return ProtocolRequest


def _answer_validation_errors_in_protocol_shape(scope) -> None:
    """Register, once, a handler that answers a body that does not validate as an inference request with 400 and
    ``{"error": ...}``. The app's exception handlers travel in the scope; FastAPI looks its handler up there when the
    error is raised, after this request object exists."""
    handlers = scope.get("starlette.exception_handlers", ({},))[0]
    if RequestValidationError not in handlers or not getattr(handlers[RequestValidationError], "_market_ab_patched",
                                                               False):
        handlers[RequestValidationError] = _validation_error_response


def _is_inference(scope) -> bool:
    """An inference request (``.../infer``, ``.../generate``): the routes whose bodies the protocol defines; other
    routes (the repository API, custom handlers of other runtimes) keep their own reading."""
    return scope.get("method") == "POST" and scope.get("path", "").endswith(("/infer", "/generate"))


async def _validation_error_response(request, error):
    from mlserver.rest.responses import Response

    what = "not an inference request" if _is_inference(request.scope) else "invalid request"
    return Response(status_code=400, content={"error": f"{what}: {request_error(error.errors())}"})


_validation_error_response._market_ab_patched = True


def _render_binary_outputs(render):
    def render_binary_outputs(self, content) -> bytes:
        wanted = _BINARY_OUTPUTS.get()
        if wanted is None or self.status_code != 200 or not isinstance(content, dict) or "outputs" not in content:
            return render(self, content)
        body, length = binary_response(content, wanted)
        if length is not None:
            self._binary_length, self.media_type = length, "application/octet-stream"
        return body

    render_binary_outputs._market_ab_patched = True
    return render_binary_outputs


def _with_binary_header(init_headers):
    def init_headers_with_binary_header(self, headers=None) -> None:
        init_headers(self, headers)
        length = getattr(self, "_binary_length", None)
        if length is not None:
            self.raw_headers.append((_HEADER, str(length).encode()))

    return init_headers_with_binary_header
