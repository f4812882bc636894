"""The MLServer runtime both routers share: it tells a request's kind by its inputs and hands it to that kind's
handler (docs/routers.md):

- decision (``ohlcv``): ``decisions.Decisions``, or the router's own subclass;
- feedback (``decision_id`` and ``reward``): ``feedback.Feedback``;
- health (``arm`` and ``healthy``): ``health.HealthMessages``.

The handlers share one ``state.RouterState`` (settings, policy, store, writer thread, snapshot).
``BanditRouter.signature`` states all three kinds for the model's metadata, each tensor marked with its kind.
"""

from __future__ import annotations

import time

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse

from seldon_market_ab.metadata import Signature, TensorSpec, serve_signature
from seldon_market_ab.mlserver_compat import install_patches
from seldon_market_ab.protocol import InvalidInput, check_request_id
from seldon_market_ab.settings import extra_of

from .decisions import FALLBACK, Decisions
from .feedback import Feedback
from .health import HealthGauge, HealthMessages
from .settings import RouterSettings
from .state import RouterState

install_patches()  # in MLServer's main process too, which imports this module to load the model

DECISION, FEEDBACK, HEALTH = ({"request": kind} for kind in ("decision", "feedback", "health"))
OPTIONAL = {"optional": True}
WINDOWS = (-1, -1, 5)  # ohlcv: [batch, rows, open high low close volume]


class BanditRouter(MLModel):
    """Settings from ``parameters.extra`` (``settings_class``); decisions by ``decisions_class``."""

    settings_class: type[RouterSettings] = RouterSettings
    decisions_class: type[Decisions] = Decisions
    clock = staticmethod(time.time)  # epoch seconds; tests inject their own

    @classmethod
    def signature(cls, config: RouterSettings) -> Signature:
        """What ``predict`` takes and answers for these settings, by request kind: a decision answers one tensor
        named after the chosen arm (``one_of`` the configured arms) carrying the ``ohlcv`` input as it came."""
        arms = {**DECISION, "one_of": ",".join(config.arms)}
        decisions = cls.decisions_class
        return Signature(
            inputs=(TensorSpec("ohlcv", "FP32", WINDOWS, DECISION), *decisions.optional_inputs,
                    TensorSpec("decision_id", "BYTES", (-1,), FEEDBACK), TensorSpec("reward", "FP64", (-1,), FEEDBACK),
                    TensorSpec("error", "INT32", (-1,), {**FEEDBACK, **OPTIONAL}),
                    TensorSpec("arm", "BYTES", (-1,), HEALTH), TensorSpec("healthy", "INT32", (-1,), HEALTH)),
            outputs=(*(TensorSpec(arm, "FP32", WINDOWS, arms) for arm in config.arms),
                     TensorSpec("arm", "BYTES", (1,), DECISION), TensorSpec("propensity", "FP64", (1,), DECISION),
                     TensorSpec("decision_id", "BYTES", (1,), DECISION), *decisions.own_outputs,
                     TensorSpec(FALLBACK, "BYTES", (1,), {**DECISION, **OPTIONAL}),
                     TensorSpec("status", "BYTES", (-1,), {"request": "feedback,health"})))

    async def load(self) -> bool:
        self.config = self.settings_class.from_extra(extra_of(self._settings), self.name)
        signature = self.signature(self.config)  # before anything starts: an arm named like an output fails here
        self.state = RouterState.open(self.name, self.config, self.clock)
        self.decisions = self.decisions_class(self.state)
        self.feedback = Feedback(self.state)
        self.health_messages = HealthMessages(self.state)
        self.health_gauge = HealthGauge(self.state)
        self.state.on_new_snapshot = self.health_gauge.publish
        await self.state.current()
        self.state.publish_pending()
        serve_signature(self, signature)
        return True

    async def unload(self) -> bool:
        if hasattr(self, "health_gauge"):  # load() may have failed before getting this far
            self.health_gauge.close()
        if hasattr(self, "state"):
            self.state.close()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            check_request_id(payload)
            outputs = await self._handler_of(payload).answer(payload)
        except InvalidInput as error:
            self.state.metrics["rejected"].labels(self.name, error.reason).inc()
            raise
        return InferenceResponse(id=payload.id, model_name=self.name, model_version=self.version, outputs=outputs)

    def _handler_of(self, payload: InferenceRequest):
        """The request's kind, by its inputs: anything that is neither feedback nor a health message is a decision
        (whose checks then name what every kind needs)."""
        names = {i.name for i in payload.inputs}
        if "reward" in names:
            return self.feedback
        if "healthy" in names:
            return self.health_messages
        return self.decisions
