"""MLServer runtime serving one TorchScript LSTM from ``models/<name>/``.

Tuning comes from ``parameters.extra`` (``LSTMSettings``), which Seldon's agent keeps. Concurrent
requests share forward passes (``batching.ForwardBatcher``).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from seldon_market_ab import metrics
from seldon_market_ab.features import FEATURE_NAMES
from seldon_market_ab.metadata import Signature, TensorSpec, serve_signature
from seldon_market_ab.mlserver_compat import install_patches
from seldon_market_ab.protocol import (
    InvalidInput,
    check_prices,
    check_request_id,
    check_windows,
    decode_float_tensor,
    encode_strings,
    encode_tensor,
)
from seldon_market_ab.settings import ExtraSettings, Field, extra_of

from .artifact import LSTMArtifact
from .batching import ForwardBatcher

install_patches()  # in MLServer's main process too, which imports this module to load the model

PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
WINDOW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
COMPUTE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _lstm_metrics() -> dict:
    return {
        "predictions": metrics.counter("lstm_predictions_total", "Predictions by direction",
                                       ["model", "direction"]),
        "probability": metrics.histogram("lstm_probability", "Predicted probability of an up move", ["model"],
                                         PROBABILITY_BUCKETS),
        "compute": metrics.histogram("lstm_compute_seconds", "Decoding, features and LSTM forward pass per request",
                                     ["model"], COMPUTE_BUCKETS),
        "windows": metrics.histogram("lstm_windows_per_request", "Windows per request",
                                     ["model"], WINDOW_BUCKETS),
        "forward": metrics.histogram("lstm_forward_windows", "Windows per forward pass (concurrent requests "
                                     "batched together)", ["model"], WINDOW_BUCKETS),
        "rejected": metrics.counter("lstm_rejected_requests_total", "Requests rejected as bad input",
                                    ["model", "reason"]),
    }


class LSTMSettings(ExtraSettings):
    """``parameters.extra`` of an LSTM model."""

    torch_threads: int = Field(1, ge=1, description="`torch.set_num_threads` in each worker (process-wide: with "
                                                    "`parallel_workers: 0` the last model loaded sets it for all)")
    batch_windows: int = Field(32, ge=1, description="the most windows one forward pass takes from concurrent "
                                                     "requests (1: no batching)")
    batch_wait_seconds: float = Field(0.002, ge=0, description="the longest a forward pass waits for more "
                                      "requests (0: only those served in the same turn of the event loop)")
    thread_windows: int = Field(16, ge=1, description="a forward pass of at least this many windows runs in a "
                                "worker thread, so the event loop serves other requests meanwhile")
    batch_wait_policy: Literal["adaptive", "fixed"] = Field(
        "adaptive", description="`adaptive`: wait only while recent passes were shared, and run as soon as the "
                                "expected requests are in, so a lone caller never waits; `fixed`: every pass waits "
                                "`batch_wait_seconds` unless it fills")


class LSTMRuntime(MLModel):
    settings_class = LSTMSettings  # what parameters.extra may hold

    @classmethod
    def signature(cls, artifact: LSTMArtifact) -> Signature:
        """What ``_decode`` takes (one of ``ohlcv`` or ``features``, floats, any batch and window length) and
        ``_respond`` answers (one value per window), for the artifact served (its feature count)."""
        one_of = {"one_of": "ohlcv,features"}
        return Signature(
            inputs=(TensorSpec("ohlcv", "FP32", (-1, -1, 5), one_of),
                    TensorSpec("features", "FP32", (-1, -1, artifact.n_features), one_of)),
            outputs=(TensorSpec("probability", "FP32", (-1,)), TensorSpec("direction", "INT32", (-1,)),
                     TensorSpec("model", "BYTES", (-1,))))

    async def load(self) -> bool:
        self.config = self.settings_class.from_extra(extra_of(self._settings), self.name)
        if self._settings.max_batch_size > 1:
            # MLServer merges raw requests under the first one's shape: windows of other lengths would be mixed up.
            raise ValueError(f"{self.name}: MLServer's adaptive batching (max_batch_size "
                             f"{self._settings.max_batch_size}) is not supported; the runtime batches forward passes "
                             "itself (parameters.extra batch_windows, batch_wait_seconds, batch_wait_policy)")
        self._artifact = LSTMArtifact.load(await get_model_uri(self._settings))
        torch.set_num_threads(self.config.torch_threads)
        self._model_label = f"{self._artifact.name}:{self._artifact.version}"
        self._metrics = _lstm_metrics()
        # label children looked up once: a lookup costs microseconds on every request
        self._compute, self._request_windows, self._probability = (
            self._metrics[kind].labels(self.name) for kind in ("compute", "windows", "probability"))
        self._ups, self._downs = (self._metrics["predictions"].labels(self.name, d) for d in ("up", "down"))
        self._warm_up()
        self._forward = ForwardBatcher(self._pass, self.config.batch_windows, self.config.batch_wait_seconds,
                                       self._metrics["forward"].labels(self.name).observe,
                                       self.config.batch_wait_policy, self.config.thread_windows)
        serve_signature(self, self.signature(self._artifact))
        return True

    def _warm_up(self) -> None:
        """Run the first (slow) TorchScript calls at load rather than on the first request."""
        rng = np.random.default_rng(0)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (8, self._artifact.min_window)), axis=1))
        ohlcv = np.stack([close, close * 1.01, close * 0.99, close, np.full_like(close, 1e6)], axis=-1)
        for batch in (1, 8):
            self._artifact.predict_features(self._artifact.features_from_ohlcv(ohlcv[:batch]))

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter()
        try:
            check_request_id(payload)
            request_input = self._decode(payload)
        except InvalidInput as error:
            self._metrics["rejected"].labels(self.name, error.reason).inc()
            raise
        probability = await self._forward(request_input, len(request_input[1]))
        self._compute.observe(time.perf_counter() - started)
        return self._respond(payload, probability)

    def _pass(self, inputs: list[tuple[str, np.ndarray]]) -> np.ndarray:
        """One forward pass over the windows of several requests (``batching.ForwardBatcher``): the features of
        each, then the model once."""
        artifact = self._artifact
        features = [artifact.features_from_ohlcv(array) if name == "ohlcv" else array for name, array in inputs]
        return artifact.predict_features(features[0] if len(features) == 1 else np.concatenate(features))

    async def unload(self) -> bool:
        self._forward.close()
        return True

    def _decode(self, payload: InferenceRequest) -> tuple[str, np.ndarray]:
        """The validated input, ``('ohlcv', [batch, rows, 5])`` or ``('features', [batch, sequence_length,
        n_features])``; features are computed in the forward pass."""
        artifact = self._artifact
        name, array = decode_float_tensor(
            payload, ("ohlcv", "features"),
            f"'ohlcv' FP32 [batch, >={artifact.min_window}, 5] (open, high, low, close, volume) or "
            f"'features' FP32 [batch, >={artifact.sequence_length}, {artifact.n_features}]")
        if name == "ohlcv":
            return name, check_prices(check_windows(name, array, 5, artifact.min_window,
                                                    "open, high, low, close, volume"))
        order = "features in metadata.json order: " + ", ".join(FEATURE_NAMES[:3]) + ", ..."
        features = check_windows(name, array, artifact.n_features, artifact.sequence_length, order)
        return name, features[:, -artifact.sequence_length:, :]  # the rows the model reads, whatever was sent

    def _respond(self, payload: InferenceRequest, probability: np.ndarray) -> InferenceResponse:
        direction = (probability > 0.5).astype(np.int32)
        batch = len(probability)
        self._request_windows.observe(batch)
        for value in probability.tolist():
            self._probability.observe(value)
        ups = int(direction.sum())
        if ups:
            self._ups.inc(ups)
        if batch - ups:
            self._downs.inc(batch - ups)
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[
                encode_tensor("probability", probability.astype(np.float32)),
                encode_tensor("direction", direction),
                encode_strings("model", [self._model_label] * batch),
            ],
        )
