"""Every use of a private or undocumented MLServer or prometheus-client detail, in one place.

Each function here leans on something the installed versions do but do not promise.
``tests/test_mlserver_compat.py`` pins the versions below and checks each detail, so an
upgrade fails there, loudly and by name, instead of somewhere in serving.
"""

from __future__ import annotations

import math
import struct
from contextlib import asynccontextmanager
from functools import cache
from importlib.metadata import version

import grpc
import numpy as np
from mlserver.codecs.numpy import to_datatype
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from prometheus_client import REGISTRY

CHECKED_VERSIONS = {"mlserver": "1.7.1", "prometheus-client": "0.26.0"}



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


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of a numpy array (``FP32``, ``INT32``, ``BYTES``, ...)."""
    return _datatype_of_dtype(np.asarray(array).dtype)


@cache
def _datatype_of_dtype(dtype: np.dtype) -> str:  # MLServer's lookup costs microseconds on every output
    return to_datatype(dtype).value


def response_from_grpc(response) -> InferenceResponse:
    """MLServer's own conversion of a gRPC ``ModelInferResponse`` into its pydantic type (clients use it)."""
    from mlserver.grpc.converters import ModelInferResponseConverter

    return ModelInferResponseConverter.to_types(response)


# Patches -------------------------------------------------------------------------------------------------------
# MLServer answers some malformed requests with INTERNAL / 500 and labels its request metrics with any model name
# a URL carries. Each patch below replaces one private function with a version that answers a client error, is
# idempotent, and is checked by tests/test_mlserver_compat.py against the installed MLServer.

_RAW_ITEM_SIZES = {"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
                   "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8}
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
        if any(dimension < 0 for dimension in tensor.shape):
            raise MLServerError(f"input '{tensor.name}' has a negative dimension in shape {list(tensor.shape)}",
                                status_code=400)
        if tensor.datatype == "BYTES":
            continue
        size = _RAW_ITEM_SIZES.get(tensor.datatype)
        if size is None:
            raise MLServerError(f"input '{tensor.name}' has datatype {tensor.datatype!r}; raw contents need one of "
                                f"{', '.join(_RAW_ITEM_SIZES)} or BYTES", status_code=400)
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
