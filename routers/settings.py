"""Router settings from ``parameters.extra``, one pydantic model per router.

Seldon's agent writes a Model's ``spec.parameters`` into ``extra`` as flat name/value
strings, so every setting is a flat key (``route_bull``, ``regime_volatility``) and strings
convert. A misspelt key or a wrong value fails the load (``seldon_market_ab.settings``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import model_validator

from seldon_market_ab.regimes import REGIMES, RegimeThresholds
from seldon_market_ab.settings import CommaList, ExtraSettings, Field

from .bandit import BetaBernoulli, NormalGamma, Policy, ThompsonSampling
from .stores import STORE_SCHEMES

STATE_DIR_ENV = "MARKET_AB_STATE_DIR"


def default_state_dir() -> Path:
    """``$MARKET_AB_STATE_DIR``, else ``$XDG_STATE_HOME/seldon-market-ab``, else ``~/.local/state/seldon-market-ab``.

    Never the model folder: on Seldon that folder is a downloaded artifact, replaced on every reschedule.
    """
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "seldon-market-ab"


class StoreSettings(ExtraSettings):
    """Where a model that keeps state (a router, the outcomes model) keeps it."""

    store: str = Field("", description="`sqlite:///name.db` (relative to `state_dir`), `sqlite:////abs/path.db` "
                                       "or `redis://host:port/db`; empty: `sqlite:///<model name>.db`")
    state_dir: str = Field("", description=f"directory for SQLite state; empty: `${STATE_DIR_ENV}`, else "
                                           "`$XDG_STATE_HOME/seldon-market-ab`, else `~/.local/state/seldon-market-ab`")

    @model_validator(mode="after")
    def _known_store(self):
        if self.store and not self.store.startswith(STORE_SCHEMES):
            raise ValueError(f"'store' {self.store!r} must start with one of {', '.join(STORE_SCHEMES)}")
        return self

    def store_url(self, model_name: str) -> str:
        return self.store or f"sqlite:///{model_name}.db"

    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_state_dir()


class RouterSettings(StoreSettings):
    """``thompson-router``: Thompson sampling over ``arms``."""

    # The settings that make the policy: `policy()` reads only these, and `policy_key()` names them all, so that what
    # a router derived from a state (stored for every worker) is never read by a router whose policy differs.
    policy_fields: ClassVar[tuple[str, ...]] = ("arms", "reward", "prior_alpha", "prior_beta", "prior_mean",
                                                "prior_std", "prior_strength", "discount", "min_share",
                                                "warmup_rewards")

    arms: CommaList = Field(("baseline", "enhanced", "lightweight"), min_length=1,
                            description="the models to route to")
    default_arm: str = Field("", description="fallback when every other arm is unhealthy (empty: the first arm)")
    reward: Literal["bernoulli", "gaussian"] = Field(
        "bernoulli", description="`bernoulli`: rewards in [0, 1] (the direction was right), Beta prior; "
                                 "`gaussian`: any finite reward (the return of the position), Normal-Gamma prior")
    prior_alpha: float = Field(1.0, ge=1, description="Beta prior (bernoulli)")
    prior_beta: float = Field(1.0, ge=1, description="Beta prior (bernoulli)")
    prior_mean: float = Field(0.0, description="prior mean reward (gaussian)")
    prior_std: float = Field(0.01, gt=0, description="prior guess of the reward's standard deviation (gaussian)")
    prior_strength: float = Field(1.0, gt=0, description="the prior mean's weight in rewards (gaussian)")
    discount: float = Field(1.0, gt=0, le=1, description="exponential forgetting per update (0.99: evidence "
                                                         "half-life of about 69 rewards)")
    min_share: float = Field(0.0, ge=0, le=1, description="every eligible arm keeps at least this probability "
                                                          "(at most 1 / number of arms)")
    warmup_rewards: int = Field(0, ge=0, description="uniform choice until every arm has this many rewards")
    decision_ttl_seconds: float = Field(7 * 24 * 3600.0, gt=0, description="how long decisions wait for feedback "
                                        "(answered ones are kept as long, for duplicate detection)")
    max_consecutive_errors: int = Field(3, ge=1, description="`error` feedback rows in a row that take an arm out")
    unhealthy_cooldown_seconds: float = Field(300.0, ge=0, description="how long such an arm stays out")
    seed: int = Field(-1, ge=-1, description="random generator seed; -1 draws fresh entropy in every worker")
    min_window: int = Field(1, ge=1, description="OHLCV rows a decision needs; set it to the arms' `min_window`")

    @model_validator(mode="after")
    def _consistent(self):
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"'arms' must be distinct, got {list(self.arms)}")
        if self.default_arm and self.default_arm not in self.arms:
            raise ValueError(f"'default_arm' {self.default_arm!r} is not one of the arms {list(self.arms)}")
        if self.min_share * len(self.arms) > 1:
            raise ValueError(f"'min_share' {self.min_share} times {len(self.arms)} arms exceeds 1")
        return self

    @property
    def fallback_arm(self) -> str:
        return self.default_arm or self.arms[0]

    def policy_key(self) -> str:
        """The policy settings as JSON: equal keys, equal policies."""
        return self.model_dump_json(include=set(self.policy_fields))

    def policy(self) -> Policy:
        p = {name: getattr(self, name) for name in self.policy_fields}  # a setting not in them: KeyError
        family = (BetaBernoulli(p["prior_alpha"], p["prior_beta"]) if p["reward"] == "bernoulli"
                  else NormalGamma(p["prior_mean"], p["prior_strength"], p["prior_std"]))
        return ThompsonSampling(p["arms"], family, p["discount"], p["min_share"], p["warmup_rewards"])


_THRESHOLDS = RegimeThresholds()


class RegimeRouterSettings(RouterSettings):
    """``regime-router``: routes by the regime of the request's window (``seldon_market_ab.regimes``)."""

    arms: CommaList = Field((), description="the arms; empty: the arms named by the routes")
    mode: Literal["rules", "learned"] = Field("rules", description="`rules`: each regime to its `route_<regime>` "
                                              "arm; `learned`: one Thompson sampler per regime")
    route_high_volatility: str = Field("robust", description="arm for `high_volatility` (rules mode)")
    route_bull: str = Field("aggressive", description="arm for `bull` (rules mode)")
    route_bear: str = Field("conservative", description="arm for `bear` (rules mode)")
    route_sideways: str = Field("baseline", description="arm for `sideways` (rules mode)")
    regime_volatility: float = Field(_THRESHOLDS.volatility, gt=0,
                                     description="annualised realised volatility above which a window is volatile")
    regime_vix: float = Field(_THRESHOLDS.vix, gt=0, description="VIX above which a window is volatile (when a "
                                                                 "`vix` input is sent)")
    regime_bull_trend: float = Field(_THRESHOLDS.bull_trend, description="trend-window log return above which "
                                                                         "a calm window is `bull`")
    regime_bear_trend: float = Field(_THRESHOLDS.bear_trend, description="trend-window log return below which "
                                                                         "a calm window is `bear`")
    regime_volatility_window: int = Field(_THRESHOLDS.volatility_window, ge=2, description="days of realised "
                                                                                           "volatility")
    regime_trend_window: int = Field(_THRESHOLDS.trend_window, ge=1, description="days of the trend")

    @model_validator(mode="before")
    @classmethod
    def _arms_from_routes(cls, values):
        if isinstance(values, dict) and not values.get("arms"):
            routes = [values.get(f"route_{regime}", cls.model_fields[f"route_{regime}"].default)
                      for regime in REGIMES]
            values = {**values, "arms": list(dict.fromkeys(str(arm).strip() for arm in routes))}
        return values

    @model_validator(mode="after")
    def _routes_name_arms(self):
        unknown = sorted(set(self.routes.values()) - set(self.arms))
        if unknown:
            raise ValueError(f"routes name arms {unknown} that are not in 'arms' {list(self.arms)}")
        if self.regime_bear_trend >= self.regime_bull_trend:
            raise ValueError("'regime_bear_trend' must be below 'regime_bull_trend'")
        return self

    @property
    def routes(self) -> dict[str, str]:
        return {regime: getattr(self, f"route_{regime}") for regime in REGIMES}

    @property
    def thresholds(self) -> RegimeThresholds:
        return RegimeThresholds(self.regime_volatility, self.regime_vix, self.regime_bull_trend,
                                self.regime_bear_trend, self.regime_volatility_window, self.regime_trend_window)
