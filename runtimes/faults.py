"""An LSTM with a documented, injected fault: added latency and a share of failed requests.

For drills and for the demo's faulty candidate, which the A/B guardrails must catch: served like any LSTM, with
``"implementation": "seldon_market_ab.runtimes.faults.FaultyLSTMRuntime"`` and the fault in ``parameters.extra``. A
failed request is answered 500 (INTERNAL over gRPC) with a message saying the fault was injected; the failures are drawn
from a seeded generator, so a run can be repeated.
"""

from __future__ import annotations

import asyncio

import numpy as np
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from pydantic import Field

from .lstm import LSTMRuntime, LSTMSettings


class FaultyLSTMSettings(LSTMSettings):
    """``parameters.extra`` of an LSTM with an injected fault (the LSTM's own settings, and these)."""

    added_latency_ms: float = Field(0.0, ge=0, description="added to every answered request")
    failure_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 500 instead")
    fault_seed: int = Field(0, description="seed of the failures")


class FaultyLSTMRuntime(LSTMRuntime):
    settings_class = FaultyLSTMSettings

    async def load(self) -> bool:
        loaded = await super().load()
        self._fault_rng = np.random.default_rng(self.config.fault_seed)
        return loaded

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if self._fault_rng.random() < self.config.failure_rate:
            raise MLServerError(f"{self.name}: injected fault (failure_rate {self.config.failure_rate})",
                                status_code=500)
        answer = await super().predict(payload)
        if self.config.added_latency_ms:
            await asyncio.sleep(self.config.added_latency_ms / 1000)
        return answer
