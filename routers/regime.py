"""``regime-router``: routes by the market regime of the request's own window.

The regime comes from ``seldon_market_ab.regimes``, the definition the specialists were trained
with: realised volatility and trend of the window's closes, or a VIX value sent as an
optional ``vix`` input. ``mode`` ``rules`` sends each regime to its configured arm
(``route_<regime>``) with propensity 1; ``learned`` runs one Thompson sampler per regime.
Both learn from feedback: in rules mode the per-regime posteriors are kept for
reporting and for switching modes.
"""

from __future__ import annotations

import numpy as np
from mlserver.types import InferenceRequest

from seldon_market_ab.metadata import TensorSpec
from seldon_market_ab.protocol import InvalidInput, decode_numbers, encode_strings
from seldon_market_ab.regimes import REGIMES, classify, regime_indicators

from .decisions import Decisions
from .runtime import DECISION, OPTIONAL, BanditRouter
from .settings import RegimeRouterSettings


class RegimeDecisions(Decisions):
    """One decision per request, in the regime of the request's first window."""

    optional_inputs = (TensorSpec("vix", "FP32", (1,), {**DECISION, **OPTIONAL}),)
    own_outputs = (TensorSpec("regime", "BYTES", (1,), DECISION),)

    @property
    def min_rows(self) -> int:
        return max(self.config.thresholds.lookback, self.config.min_window)

    def regime_of(self, ohlcv: np.ndarray, payload: InferenceRequest) -> str:
        """Regime of the request's first window (one decision per request)."""
        thresholds = self.config.thresholds
        volatility, trend = regime_indicators(ohlcv[0, -thresholds.lookback:, 3], thresholds)
        vix = None
        if any(i.name == "vix" for i in payload.inputs):
            vix = float(decode_numbers(payload, "vix", ("FP32", "FP64"), 1)[0])
            if vix <= 0:
                raise InvalidInput(f"input 'vix' must be > 0, got {vix}", "invalid_price")
        index = int(classify(volatility[-1], trend[-1], vix, thresholds))
        return REGIMES[index]

    def context_of(self, ohlcv: np.ndarray, payload: InferenceRequest) -> str:
        return self.regime_of(ohlcv, payload)

    def choose(self, ohlcv: np.ndarray, payload: InferenceRequest, eligible: tuple[str, ...]):
        regime = self.regime_of(ohlcv, payload)
        if self.config.mode == "learned":
            return (regime, *self.thompson(regime, eligible))
        arm = self.config.routes[regime]
        if arm not in eligible:  # the route's arm is out: the default arm, else the first healthy arm
            fallback = self.config.fallback_arm
            arm = fallback if fallback in eligible else eligible[0]
        return regime, arm, 1.0

    def decision_outputs(self, decision) -> list:
        return [encode_strings("regime", [decision.context])]


class RegimeRouter(BanditRouter):
    settings_class = RegimeRouterSettings
    decisions_class = RegimeDecisions
