"""Every use of a private or undocumented MLServer or prometheus-client detail, in one place.

Each function here leans on something the installed versions do but do not promise.
``tests/test_mlserver_compat.py`` pins the versions below and checks each detail, so an
upgrade fails there, loudly and by name, instead of somewhere in serving.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version

import numpy as np
from mlserver.codecs.numpy import to_datatype
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
