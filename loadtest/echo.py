"""The benchmark's baseline: an MLServer runtime that answers with its inputs.

Served beside the real models in the same server, it pays everything MLServer pays for a request
of the same payload (decoding, the event loop, encoding the answer) and nothing else, so
``model ÷ echo`` measures what our runtimes add.
"""

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class EchoRuntime(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            outputs=[ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, data=i.data)
                     for i in payload.inputs],
        )
