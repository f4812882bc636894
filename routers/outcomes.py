"""``outcomes``: where the truth about a market prediction arrives, a day after the answer (docs/monitoring.md).

A request carries, per answered request: ``request_id`` BYTES [n], ``model`` BYTES [n] (the served model that
answered: an experiment's candidate, a router pipeline's arm; ``name`` or ``name:version``), ``correct`` INT32 [n]
(1: the predicted direction was right) and optionally ``return`` FP64 [n] (the strategy's return). It answers
``status`` BYTES [n]: ``recorded``, ``duplicate``, ``conflict`` or ``unknown_model``.

Outcomes are committed to the routers' store layer before the reply (group commits by the store writer), one per
request id, so a client may send them again after a timeout; they are counted as they commit, so an outcome whose
reply was lost is counted all the same, once. The per-arm counters are labelled only by the
configured ``arms``, never by a string from a request, so their series stay bounded.
"""

from __future__ import annotations

import logging
import time

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse
from pydantic import model_validator

from seldon_market_ab import metrics
from seldon_market_ab.metadata import Signature, TensorSpec, serve_signature
from seldon_market_ab.mlserver_compat import install_patches
from seldon_market_ab.protocol import (
    REQUEST_ID,
    REQUEST_ID_RULE,
    InvalidInput,
    check_request_id,
    decode_numbers,
    decode_strings,
    encode_strings,
)
from seldon_market_ab.settings import CommaList, Field, extra_of

from .settings import StoreSettings
from .state import EXPIRY_SWEEP_SECONDS, STORE_DEADLINE_SECONDS, store_unavailable
from .stores import Expire, Outcome, OutcomeStatus, RecordOutcome, StoreUnavailableError, StoreWriter, open_store

logger = logging.getLogger(__name__)
install_patches()  # in MLServer's main process too, which imports this module to load the model

LSTM_MODELS = ("baseline", "enhanced", "lightweight", "robust", "aggressive", "conservative")
IDS = (-1,)


class OutcomesSettings(StoreSettings):
    """``outcomes``: the arms whose outcomes are counted, and where outcomes are kept."""

    arms: CommaList = Field(LSTM_MODELS, min_length=1, description="the served models whose outcomes are counted "
                            "(the metrics' `model` label); a row naming another is answered `unknown_model`. Under "
                            "`market-ab serve`, unless the Model in the manifests names them: every model of the "
                            "repository that predicts a direction")
    ttl_seconds: float = Field(7 * 24 * 3600.0, gt=0, description="how long an outcome is kept, for duplicate "
                                                                 "detection (the counters keep it for ever)")

    @model_validator(mode="after")
    def _distinct_arms(self):
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"'arms' must be distinct, got {list(self.arms)}")
        return self


def _outcome_metrics() -> dict:
    return metrics.cached({
        "outcomes": metrics.counter("outcomes", "Outcomes recorded, by the model that answered", ["model"]),
        "correct": metrics.counter("outcomes_correct", "Outcomes whose predicted direction was right", ["model"]),
        # a gauge: returns may be negative, and a counter cannot go down
        "return": metrics.gauge("outcome_return_sum", "Sum of the strategy returns of the outcomes recorded",
                                ["model"], multiprocess_mode="sum"),
        "rows": metrics.counter("outcome_rows", "Outcome rows by status (recorded, duplicate, conflict, "
                                "unknown_model)", ["status"]),
        "rejected": metrics.counter("outcome_rejected_requests", "Outcome requests rejected as bad input",
                                    ["reason"]),
    })


class OutcomesRuntime(MLModel):
    settings_class = OutcomesSettings
    clock = staticmethod(time.time)  # epoch seconds; tests inject their own

    @classmethod
    def signature(cls, config: OutcomesSettings) -> Signature:
        return Signature(
            inputs=(TensorSpec("request_id", "BYTES", IDS), TensorSpec("model", "BYTES", IDS),
                    TensorSpec("correct", "INT32", IDS), TensorSpec("return", "FP64", IDS, {"optional": True})),
            outputs=(TensorSpec("status", "BYTES", IDS),))

    async def load(self) -> bool:
        self.config = self.settings_class.from_extra(extra_of(self._settings), self.name)
        self._metrics = _outcome_metrics()
        for arm in self.config.arms:  # every arm's series exists from the start, so that rate() sees the first outcome
            self._metrics["outcomes"].labels(arm)
            self._metrics["correct"].labels(arm)
            self._metrics["return"].labels(arm)
        # State never lives in the model folder: on Seldon that folder is a downloaded artifact.
        self.store = open_store(self.config.store_url(self.name), self.name, self.config.state_path())
        # counted where they commit: a request that times out still recorded its rows, and its retry is a duplicate
        self.writer = StoreWriter(self.store, name=f"{self.name}-store-writer", applied=self._recorded)
        self._next_sweep = self.clock()
        serve_signature(self, self.signature(self.config))
        return True

    async def unload(self) -> bool:
        if hasattr(self, "writer"):
            self.writer.close()
        if hasattr(self, "store"):
            self.store.close()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            check_request_id(payload)
            rows = self._rows(payload, self.clock())
        except InvalidInput as error:
            self._metrics["rejected"].labels(error.reason).inc()
            raise
        known = [RecordOutcome(row) for row in rows if row is not None]
        try:
            results = await self.writer.commit_within(STORE_DEADLINE_SECONDS, *known) if known else []
        except StoreUnavailableError as error:
            logger.warning("%s: state store unavailable (%s)", self.name, error)
            raise store_unavailable("the outcomes may not have been recorded: send them again (a repeated "
                                    "request_id with the same values counts once)", "the outcomes'") from None
        statuses = iter(results)
        answer = []
        for row in rows:
            status = OutcomeStatus.UNKNOWN_MODEL if row is None else next(statuses)
            self._metrics["rows"].labels(status.value).inc()
            answer.append(status.value)
        self._sweep_expired()
        return InferenceResponse(id=payload.id, model_name=self.name, model_version=self.version,
                                 outputs=[encode_strings("status", answer)])

    def _rows(self, payload: InferenceRequest, now: float) -> list[Outcome | None]:
        """One outcome per row, or None for a row naming a model that is not a configured arm."""
        ids = decode_strings(payload, "request_id", "invalid_request_id")
        malformed = next((i for i in ids if not REQUEST_ID.fullmatch(i)), None)
        if malformed is not None:  # no answered request can have it
            raise InvalidInput(f"input 'request_id' holds {ascii(malformed[:40])}; request ids are "
                               f"{REQUEST_ID_RULE}", "invalid_request_id")
        models = decode_strings(payload, "model", "invalid_outcome")
        if len(models) != len(ids):
            raise InvalidInput(f"input 'model' has {len(models)} values; expected {len(ids)}, one per request_id",
                               "shape")
        correct = decode_numbers(payload, "correct", ("INT32", "INT64", "BOOL"), len(ids), "request_id")
        flags = correct.tolist()
        if not all(flag in (0, 1) for flag in flags):
            raise InvalidInput(f"input 'correct' must hold 1 (the predicted direction was right) or 0, got "
                               f"{sorted(set(flags) - {0, 1})[:5]}", "invalid_outcome")
        returns = [None] * len(ids)
        if any(i.name == "return" for i in payload.inputs):
            returns = decode_numbers(payload, "return", ("FP64", "FP32"), len(ids), "request_id").tolist()
        return [None if (arm := self._arm(model)) is None else
                Outcome(request_id, arm, bool(ok), None if value is None else float(value), now)
                for request_id, model, ok, value in zip(ids, models, flags, returns, strict=True)]

    def _arm(self, model: str) -> str | None:
        """The configured arm a ``model`` value names: itself, or its name without ``:version``."""
        if model in self.config.arms:
            return model
        name = model.rsplit(":", 1)[0]
        return name if name in self.config.arms else None

    def _recorded(self, operation, status) -> None:
        """In the writer thread, for every committed write: count the outcomes recorded."""
        if isinstance(operation, RecordOutcome) and status is OutcomeStatus.RECORDED:
            self._count(operation.outcome)

    def _count(self, outcome: Outcome) -> None:
        self._metrics["outcomes"].labels(outcome.model).inc()
        if outcome.correct:
            self._metrics["correct"].labels(outcome.model).inc()
        if outcome.strategy_return is not None:
            self._metrics["return"].labels(outcome.model).inc(outcome.strategy_return)

    def _sweep_expired(self) -> None:
        """Forget outcomes older than ``ttl_seconds``, at most every ``EXPIRY_SWEEP_SECONDS``."""
        now = self.clock()
        if now >= self._next_sweep:
            self.writer.submit(Expire(now, self.config.ttl_seconds))
            self._next_sweep = now + EXPIRY_SWEEP_SECONDS
