"""The ``Rollout`` document (``apiVersion: market-ab.io/v1alpha1``, our own kind, not a Seldon CRD), validated with
pydantic: every problem is one line naming the field, what was given and what is allowed.

Example
-------
>>> rollout = Rollout.from_yaml('''
... apiVersion: market-ab.io/v1alpha1
... kind: Rollout
... metadata: {name: enhanced}
... spec: {experiment: ab-test, baseline: baseline, candidate: enhanced, steps: [10, 25, 50]}
... ''')
>>> rollout.spec.interval, rollout.spec.promote.policy, rollout.spec.gates.error_rate.margin
(30.0, 'superior', 0.01)
>>> try:
...     Rollout.from_yaml("kind: Rollout\\nmetadata: {name: x}\\nspec: {experiment: e, baseline: a, candidate: a, "
...                       "steps: [50, 20], interval: soon}")
... except RolloutError as error:
...     print(error)
apiVersion: required field is missing (expected market-ab.io/v1alpha1)
spec.steps: [50, 20]: steps must rise (candidate weights in percent, e.g. [10, 25, 50])
spec.interval: 'soon' is not a duration (e.g. 30s, 5m, 1h)
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

API_VERSION = "market-ab.io/v1alpha1"
# what a webhook may ask for: the decisions (a rollback by Flagger's name for it), and the run's start, resume and abort
EVENTS = ("start", "resume", "advance", "rollback", "promote", "keep_baseline", "abort")
NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # a Kubernetes object name (DNS-1123), as Seldon's Models have
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class RolloutError(ValueError):
    """A Rollout document that does not validate: one line per problem."""


def seconds(value) -> float:
    """``30s``, ``5m``, ``1h30m``, ``250ms`` or a number of seconds.

    >>> seconds("1h30m"), seconds("250ms"), seconds(12)
    (5400.0, 0.25, 12.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 1h)")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


Duration = Annotated[float, BeforeValidator(seconds), Field(gt=0)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ErrorRateGate(_Part):
    """Fails when the lower 95% bound of (candidate - baseline) server-error rate is above ``margin``."""

    margin: float = Field(0.01, ge=0, le=1)


class LatencyGate(_Part):
    """Fails when the lower 95% bound of the candidate's p99 is above the baseline's p99 × ``ratio`` + ``slackMs``."""

    ratio: float = Field(1.25, ge=1)
    slack_ms: float = Field(5.0, ge=0, alias="slackMs")
    # a histogram with a `model` label; Seldon's own (`seldon_model_infer_api_seconds`) has none
    histogram: str = Field("market_ab_gateway_model_seconds", pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class AccuracyGate(_Part):
    """Fails when the always-valid test finds the candidate less accurate than the baseline at level ``alpha``."""

    alpha: float = Field(0.05, gt=0, lt=1)
    scale: float = Field(0.05, gt=0, le=1)  # the mSPRT mixture: the accuracy differences the test is tuned to


class Gates(_Part):
    error_rate: ErrorRateGate = Field(default_factory=ErrorRateGate, alias="errorRate")
    latency: LatencyGate = Field(default_factory=LatencyGate)
    accuracy: AccuracyGate = Field(default_factory=AccuracyGate)
    min_requests: int = Field(20, ge=1, alias="minRequests")  # per arm, before a guardrail judges


class Promote(_Part):
    """``superior``: promote when the candidate is significantly more accurate; ``noninferior``: when it is
    significantly no worse than ``margin`` below the baseline (both always-valid at the accuracy gate's alpha)."""

    policy: Literal["superior", "noninferior"] = "superior"
    margin: float = Field(0.02, ge=0, le=1)


class MirrorPhase(_Part):
    """Before the first step, the candidate gets a copy of ``percent`` % of the requests as the experiment's mirror
    (its answers dropped, no client sees them) until both guardrails could judge those copies and passed."""

    percent: int = Field(100, ge=1, le=100)


class Webhook(_Part):
    name: str
    url: str = Field(pattern=r"^https?://")
    events: tuple[Literal[EVENTS], ...] = ()  # empty: every event


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class RolloutSpec(_Part):
    experiment: str = Field(pattern=NAME)
    baseline: str = Field(pattern=NAME)
    candidate: str = Field(pattern=NAME)
    steps: tuple[int, ...] = Field(min_length=1)
    interval: Duration = 30.0
    min_outcomes: int = Field(50, ge=0, alias="minOutcomes")  # candidate outcomes a step needs before it advances
    gates: Gates = Field(default_factory=Gates)
    promote: Promote = Field(default_factory=Promote)
    mirror: MirrorPhase | None = None
    max_duration: Duration = Field(3600.0, alias="maxDuration")
    prometheus: str = Field("http://127.0.0.1:9090", pattern=r"^https?://")
    webhooks: tuple[Webhook, ...] = ()

    @field_validator("steps")
    @classmethod
    def _rising_percentages(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 < step < 100 for step in steps):
            raise ValueError(f"{list(steps)}: each step is a candidate weight in percent, 1 to 99 (the baseline "
                             "keeps the rest to compare with; promotion moves the candidate to 100)")
        if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"{list(steps)}: steps must rise (candidate weights in percent, e.g. [10, 25, 50])")
        return steps

    @model_validator(mode="after")
    def _two_arms(self) -> RolloutSpec:
        if self.candidate == self.baseline:
            raise ValueError(f"the candidate '{self.candidate}' is also the baseline")
        return self


class Rollout(_Part):
    api_version: Literal["market-ab.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Rollout"]
    metadata: Metadata
    spec: RolloutSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @classmethod
    def from_yaml(cls, text: str, source: str = "") -> Rollout:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise RolloutError(f"{source or 'the Rollout'} is not YAML: {error}") from None
        if not isinstance(document, dict):
            raise RolloutError(f"{source or 'the Rollout'}: expected a mapping with apiVersion, kind, metadata, spec")
        try:
            return cls.model_validate(document)
        except ValidationError as error:
            raise RolloutError("\n".join(_line(problem) for problem in error.errors())) from None


def _line(problem: dict) -> str:
    """One line: where (the document's own field names), what was wrong, and what was given."""
    where = ".".join(str(part) for part in problem["loc"]) or "(document)"
    if problem["type"] == "missing":
        return f"{where}: required field is missing" + (f" (expected {API_VERSION})" if where == "apiVersion" else "")
    if problem["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "string_pattern_mismatch":
        message = _PATTERNS.get(problem["ctx"]["pattern"], message)
    if problem["type"] == "value_error":  # our own checks name what was given
        return f"{where}: {message}"
    return f"{where}: {message} (given {problem['input']!r})"


_PATTERNS = {NAME: "expected a Kubernetes object name (lower-case letters, digits, '-' and '.')",
             r"^https?://": "expected an http:// or https:// URL",
             r"^[a-zA-Z_:][a-zA-Z0-9_:]*$": "expected a Prometheus metric name"}


def fields_table() -> str:
    """The docs' table of ``spec``: each field by its document name, its default and what it means."""
    lines = ["| field | default | meaning |", "|---|---|---|"]

    def visit(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            key = f"{prefix}{info.alias or name}"
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, _Part) and annotation is not Webhook:
                visit(annotation, key + ".")
                continue
            default = "required" if info.is_required() else info.get_default(call_default_factory=True)
            shown = default if default == "required" else "unset" if default is None else f"`{_show(default)}`"
            lines.append(f"| `{key}` | {shown} | {_meanings.get(key, '')} |")

    visit(RolloutSpec, "")
    return "\n".join(lines)


def _show(value) -> str:
    if isinstance(value, tuple):
        return "[]" if not value else str(list(value))
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


_meanings = {
    "experiment": "the Seldon Experiment whose weights move",
    "baseline": "the candidate that keeps the rest of the traffic",
    "candidate": "the model rolled out",
    "steps": "the candidate's weight in percent at each step, rising",
    "interval": "seconds between looks (`30s`, `1m`, `1h30m`)",
    "minOutcomes": "the candidate's outcomes a step needs before it may advance",
    "gates.errorRate.margin": "fail when the candidate's server-error rate is surely above the baseline's plus this",
    "gates.latency.ratio": "fail when the candidate's p99 is surely above the baseline's p99 times this ...",
    "gates.latency.slackMs": "... plus this many milliseconds",
    "gates.latency.histogram": "a latency histogram with a `model` label (Seldon's own has none)",
    "gates.accuracy.alpha": "level of the always-valid test: fail when the candidate is less accurate",
    "gates.accuracy.scale": "the test's mixture: the size of accuracy differences it is tuned to find",
    "gates.minRequests": "requests per arm before a guardrail judges",
    "promote.policy": "`superior` (significantly more accurate) or `noninferior` (significantly not `margin` worse)",
    "promote.margin": "the non-inferiority margin",
    "mirror": "optional `{percent}`: a mirror phase before the first step (copies to the candidate, answers dropped)",
    "maxDuration": "ends the rollout kept_baseline",
    "prometheus": "where the figures come from (`--prometheus` overrides)",
    "webhooks": "`{name, url, events}`: each event POSTed as JSON (events: all when empty)",
}
