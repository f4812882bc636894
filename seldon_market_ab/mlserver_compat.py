"""Every use of a private or undocumented MLServer or prometheus-client detail, in one place.

Each function here leans on something the installed versions do but do not promise.
``tests/test_mlserver_compat.py`` pins the versions below and checks each detail, so an
upgrade fails there, loudly and by name, instead of somewhere in serving.
"""

from __future__ import annotations

import logging
from importlib.metadata import version

import numpy as np
from mlserver.codecs.numpy import to_datatype
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest, InferenceResponse
from prometheus_client import REGISTRY

CHECKED_VERSIONS = {"mlserver": "1.7.1", "prometheus-client": "0.26.0"}
ADAPTIVE_BATCHING_ATTRIBUTE = "__adaptive_batching__"  # mlserver.batching.hooks._AdaptiveBatchingAttr

logger = logging.getLogger(__name__)


def unchecked_versions() -> dict[str, str]:
    """Installed versions that differ from the ones this module was checked against."""
    return {name: version(name) for name, checked in CHECKED_VERSIONS.items() if version(name) != checked}


def registered_collector(name: str):
    """The collector registered under ``name`` on the default registry, or None.

    prometheus-client has no public lookup; MLServer imports a runtime module more than
    once, so metrics must be found again rather than created twice.
    """
    return REGISTRY._names_to_collectors.get(name)


def configure_adaptive_batching(settings: ModelSettings, max_batch_size: int | None,
                                max_batch_time: float | None) -> None:
    """Set MLServer's adaptive batching from values read in ``parameters.extra``.

    Seldon's agent drops the top-level ``max_batch_size``/``max_batch_time``, and MLServer
    sets batching up from these fields before ``load()`` runs, so a runtime calls this from
    ``__init__``, before ``MLModel.__init__``.
    """
    if max_batch_size is not None:
        settings.max_batch_size = max_batch_size
    if max_batch_time is not None:
        settings.max_batch_time = max_batch_time


def batches_in_this_process(model) -> bool:
    """True when MLServer's adaptive batcher wraps ``model.predict`` in this process (``parallel_workers``
    0); with parallel workers the batcher lives in the main process, beyond the runtime's reach."""
    return getattr(model, ADAPTIVE_BATCHING_ATTRIBUTE, None) is not None


def request_headers(payload: InferenceRequest) -> dict[str, str]:
    """HTTP headers or gRPC metadata of a request, which MLServer copies into ``parameters.headers``."""
    return dict((payload.parameters and payload.parameters.headers) or {})


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of a numpy array (``FP32``, ``INT32``, ``BYTES``, ...)."""
    return to_datatype(np.asarray(array).dtype).value


def response_from_grpc(response) -> InferenceResponse:
    """MLServer's own conversion of a gRPC ``ModelInferResponse`` into its pydantic type (clients use it)."""
    from mlserver.grpc.converters import ModelInferResponseConverter

    return ModelInferResponseConverter.to_types(response)
