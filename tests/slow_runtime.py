"""A test-only runtime whose load waits until a file exists: the test decides when the model becomes ready."""

import asyncio
from pathlib import Path

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class SlowRuntime(MLModel):
    async def load(self) -> bool:
        gate = Path(self.settings.parameters.extra["gate"])
        for _ in range(1200):  # at most a minute
            if gate.exists():
                return True
            await asyncio.sleep(0.05)
        return False

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(model_name=self.name, outputs=[
            ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data) for i in payload.inputs])


class GatedRuntime(MLModel):
    """Answers a request only once the file ``parameters.extra.gate`` exists, then appends the shapes it received to
    ``<gate>.seen``: a test holds a request in flight for as long as it wants, and reads what arrived."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        gate = Path(self.settings.parameters.extra["gate"])
        for _ in range(1200):  # at most a minute
            if gate.exists():
                break
            await asyncio.sleep(0.05)
        with open(f"{gate}.seen", "a") as seen:
            seen.write(" ".join(f"{i.name}:{'x'.join(map(str, i.shape))}" for i in payload.inputs) + "\n")
        return InferenceResponse(model_name=self.name, outputs=[
            ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data) for i in payload.inputs])
