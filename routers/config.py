"""Router settings from ``parameters.extra``.

Seldon's agent writes a Model's ``spec.parameters`` into ``extra`` as flat name/value
strings, so every setting is a flat key and strings are converted here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields

from runtimes.regimes import REGIMES, RegimeThresholds

from .policies import FAMILIES, BetaBernoulli, NormalGamma, ThompsonSampling

logger = logging.getLogger(__name__)

DEFAULT_ROUTES = {"high_volatility": "robust", "bull": "aggressive", "bear": "conservative", "sideways": "baseline"}


def _as_list(value) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


@dataclass(frozen=True)
class RouterConfig:
    arms: tuple[str, ...] = ("baseline", "enhanced", "lightweight")
    default_arm: str = ""  # fallback when every other arm is unhealthy; first arm if empty
    reward: str = "bernoulli"  # or "gaussian"
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    prior_mean: float = 0.0
    prior_std: float = 0.01
    prior_strength: float = 1.0
    discount: float = 1.0
    min_share: float = 0.0
    warmup_rewards: int = 0
    decision_ttl_seconds: float = 7 * 24 * 3600.0
    store: str = "sqlite:///router-state.db"  # relative paths are relative to the model folder
    max_consecutive_errors: int = 3
    unhealthy_cooldown_seconds: float = 300.0
    seed: int = -1  # -1: fresh entropy in every worker
    min_window: int = 1  # OHLCV rows a decision needs (set it to the arms' min_window)
    mode: str = "rules"  # regime router: "rules" or "learned"
    routes: dict = field(default_factory=dict)  # regime router: regime -> arm
    thresholds: RegimeThresholds = RegimeThresholds()

    @classmethod
    def from_extra(cls, extra: dict | None, regime: bool = False) -> RouterConfig:
        extra = dict(extra or {})
        values, routes, thresholds = {}, dict(DEFAULT_ROUTES), {}
        defaults = cls()
        simple = {f.name for f in fields(cls)} - {"routes", "thresholds", "arms"}
        for key, value in extra.items():
            if key == "arms":
                values["arms"] = tuple(_as_list(value))
            elif key in simple:
                values[key] = type(getattr(defaults, key))(value)  # Seldon passes strings
            elif regime and key.startswith("route_") and key[6:] in REGIMES:
                routes[key[6:]] = str(value)
            elif regime and key.startswith("regime_"):
                thresholds[key[7:]] = value
            else:
                logger.warning("ignoring unknown router setting %r", key)
        if regime:
            values["routes"] = routes
            values["thresholds"] = RegimeThresholds.from_mapping(thresholds)
            values.setdefault("arms", tuple(dict.fromkeys(routes.values())))
        config = cls(**values)
        config.validate()
        return config

    @property
    def fallback_arm(self) -> str:
        return self.default_arm or self.arms[0]

    def validate(self) -> None:
        if self.reward not in FAMILIES:
            raise ValueError(f"reward must be one of {sorted(FAMILIES)}, got {self.reward!r}")
        if self.fallback_arm not in self.arms:
            raise ValueError(f"default_arm {self.default_arm!r} is not one of the arms {list(self.arms)}")
        if self.mode not in ("rules", "learned"):
            raise ValueError(f"mode must be 'rules' or 'learned', got {self.mode!r}")
        unknown = set(self.routes.values()) - set(self.arms)
        if unknown:
            raise ValueError(f"routes name arms {sorted(unknown)} that are not in arms {list(self.arms)}")
        self.policy()  # raises on bad policy settings

    def policy(self) -> ThompsonSampling:
        family = (BetaBernoulli(self.prior_alpha, self.prior_beta) if self.reward == "bernoulli"
                  else NormalGamma(self.prior_mean, self.prior_strength, self.prior_std))
        return ThompsonSampling(self.arms, family, self.discount, self.min_share, self.warmup_rewards)
