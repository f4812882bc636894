"""``parameters.extra`` of the drift detector, validated like every runtime's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from seldon_market_ab.settings import CommaList, ExtraSettings, Field

from .calibration import SERIES_TESTS
from .checks import TESTS

IID_TESTS = ("ks", "cvm", "psi")


class DriftSettings(ExtraSettings):
    """``parameters.extra`` of the drift detector."""

    calibration: Literal["series", "iid"] = Field(
        "series", description="`series`: a window drifts when it is more unusual than the reference period's own "
                              "windows of consecutive rows of the same size (`detectors/calibration.py`); `iid`: "
                              "alibi-detect's tests with their own p-values, which assume independent rows")
    tests: CommaList = Field(SERIES_TESTS,
                             description=f"the tests: with `series`, some of {', '.join(SERIES_TESTS)}; with `iid`, "
                                         f"some of {', '.join(TESTS)} (`tabular` equals `ks` when no feature is "
                                         "categorical, as here; `classifier` trains a small network per window)")
    ensemble_k: int | None = Field(None, ge=1, description="drift when at least this many tests agree (unset: 1 "
                                                           "with `series`, whose tests see different things; 2 "
                                                           "with `iid`, or 1 with a single test)")
    p_value: float = Field(0.05, gt=0, lt=1, description="significance of each test: with `series`, the share of "
                                                         "the reference period's windows it flags")
    correction: Literal["bonferroni", "fdr"] = Field("bonferroni", description="multiple-testing correction of the "
                                                                               "per-feature tests (`iid`; `series` "
                                                                               "names features by Bonferroni)")
    window_size: int = Field(60, ge=10, description="rows of the rolling window; a request of at least this many "
                                                    "rows is judged on its own, every row of it")
    max_window_size: int = Field(250, ge=10, description="`series`: the most rows a request may hold (each size "
                                                         "is calibrated on first use; a longer one is refused)")
    evaluate_every: int = Field(0, ge=0, description="rows between tests of the rolling window (0: `window_size`)")
    mmd_permutations: int = Field(100, ge=10, description="permutations of the MMD test")
    online: bool = Field(True, description="feed every row of requests smaller than a window to the online "
                                           "Cramér-von Mises detector")
    tests_in: Literal["process", "thread"] = Field(
        "process", description="`process`: the tests and the online detector run in a child process at lower "
                               "priority, so they only take processor time the predictions leave; `thread`: in a "
                               "thread of the serving process, where they hold Python's GIL and delay every "
                               "model served beside them (`loadtest/drift_serving.py` measures both)")
    webhook_url: str = Field("", description="POST verdict changes here as JSON (empty: no alerts)")
    webhook_debounce_seconds: float = Field(60.0, ge=0, description="at most one alert per this many seconds")
    webhook_retries: int = Field(5, ge=0, description="retries of an alert, with exponential back-off")
    webhook_timeout_seconds: float = Field(5.0, gt=0, description="timeout of one attempt")

    @model_validator(mode="before")
    @classmethod
    def _default_tests(cls, values):
        """With `iid` and no tests named, alibi-detect's cheap univariate three."""
        if isinstance(values, dict) and values.get("calibration") == "iid" and "tests" not in values:
            values = {**values, "tests": IID_TESTS}
        return values

    @model_validator(mode="after")
    def _consistent(self):
        if not self.tests or len(set(self.tests)) != len(self.tests):
            raise ValueError(f"'tests' must name at least one test, each once; got {list(self.tests)}")
        allowed = SERIES_TESTS if self.calibration == "series" else TESTS
        unknown = sorted(set(self.tests) - set(allowed))
        if unknown:
            other = "; set calibration 'iid' for alibi-detect's tests" if self.calibration == "series" else ""
            raise ValueError(f"'tests' names {unknown}, not tests of calibration '{self.calibration}'; expected some "
                             f"of {list(allowed)}{other}")
        if self.ensemble_k is not None and self.ensemble_k > len(self.tests):
            raise ValueError(f"'ensemble_k' {self.ensemble_k} exceeds the {len(self.tests)} tests")
        if self.calibration == "series" and self.max_window_size < self.window_size:
            raise ValueError(f"'max_window_size' {self.max_window_size} is below 'window_size' {self.window_size}")
        return self

    @property
    def votes(self) -> int:
        """How many tests must agree: ``ensemble_k``, or its default for the calibration."""
        if self.ensemble_k is not None:
            return self.ensemble_k
        return min(1 if self.calibration == "series" else 2, len(self.tests))
