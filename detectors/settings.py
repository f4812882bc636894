"""``parameters.extra`` of the drift detector, validated like every runtime's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from seldon_market_ab.settings import CommaList, ExtraSettings, Field

from .calibration import SERIES_TESTS
from .checks import TESTS


class DriftSettings(ExtraSettings):
    """``parameters.extra`` of the drift detector."""

    calibration: Literal["series", "iid"] = Field(
        "series", description="`series`: a window drifts when it is more unusual than the reference period's own "
                              "windows of consecutive rows (`detectors/calibration.py`); `iid`: the tests' own "
                              "p-values, which assume independent rows")
    tests: CommaList = Field(("ks", "cvm", "psi"),
                             description=f"the tests, some of {', '.join(TESTS)} (`series` takes "
                                         f"{', '.join(SERIES_TESTS)}; `tabular` equals `ks` when no feature is "
                                         "categorical, as here; `classifier` trains a small network per window)")
    ensemble_k: int = Field(2, ge=1, description="drift when at least this many tests agree")
    p_value: float = Field(0.05, gt=0, lt=1, description="significance of each test")
    correction: Literal["bonferroni", "fdr"] = Field("bonferroni", description="multiple-testing correction of the "
                                                                               "per-feature tests")
    window_size: int = Field(60, ge=10, description="rows a window holds; a request of at least this many rows is "
                                                    "tested on its own (`series`: the reference's calibrated size)")
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

    @model_validator(mode="after")
    def _consistent(self):
        unknown = sorted(set(self.tests) - set(TESTS))
        if unknown:
            raise ValueError(f"'tests' names unknown tests {unknown}; expected some of {list(TESTS)}")
        if self.calibration == "series" and set(self.tests) - set(SERIES_TESTS):
            raise ValueError(f"'tests' {sorted(set(self.tests) - set(SERIES_TESTS))} have no series calibration; "
                             f"with calibration 'series' choose among {list(SERIES_TESTS)}, or set calibration 'iid'")
        if self.ensemble_k > len(self.tests):
            raise ValueError(f"'ensemble_k' {self.ensemble_k} exceeds the {len(self.tests)} tests")
        return self
