"""``drift-detector``: drift tests on the models' inputs, beside the models (docs/drift.md).

A request carries ``ohlcv`` windows like the LSTMs' (each window contributes one feature row: its last, computed by
the same feature code) or ``features`` rows ``[n, n_features]``, and optionally ``dates`` (ISO dates of the rows). A
request of at least ``window_size`` rows is tested as one window, every row of it: what a Seldon pipeline step with
``batch: {size: N}`` delivers (the series tests are calibrated for each size up to ``max_window_size``; a longer
request is refused, naming the sizes). Smaller requests roll into a window kept by each worker, which is tested once
it is full and every ``evaluate_every`` rows after; their rows also feed an online Cramér-von Mises detector, which
watches the stream row by row between tests.

Tests run one window at a time in a child process at lower priority (``detectors/tester.py``), so that neither
this event loop nor the models served beside it wait for them. Every response carries
``is_drift`` (the ensemble: at least ``ensemble_k`` tests agree), and after a test the detail beside it: each test's
verdict and p-value, per-feature p-values, and the features that moved.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque

import numpy as np
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from seldon_market_ab import metrics
from seldon_market_ab.features import FEATURE_NAMES, WARMUP, compute_features
from seldon_market_ab.metadata import Signature, TensorSpec, serve_signature
from seldon_market_ab.mlserver_compat import install_patches
from seldon_market_ab.protocol import (
    InvalidInput,
    check_prices,
    check_request_id,
    check_windows,
    decode_float_tensor,
    decode_strings,
    encode_strings,
    encode_tensor,
)
from seldon_market_ab.settings import extra_of

from .alerts import WebhookAlerts
from .calibration import MIN_WINDOWS
from .checks import Result
from .reference import InvalidReference, Reference
from .settings import DriftSettings
from .statistics import ensemble
from .tester import TestRunner

logger = logging.getLogger(__name__)
install_patches()  # in MLServer's main process too, which imports this module to load the model

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _drift_metrics() -> dict:
    return {
        "is_drift": metrics.gauge("drift_is_drift", "1 if the last window tested drifted (ensemble)", ["model"]),
        "windows": metrics.counter("drift_windows_total", "Windows tested, by verdict", ["model", "verdict"]),
        "test_drift": metrics.gauge("drift_test_is_drift", "1 if the test flagged the last window", ["model", "test"]),
        "seconds": metrics.histogram("drift_test_seconds", "Seconds per test and window", ["model", "test"],
                                     SECONDS_BUCKETS),
        "p_value": metrics.gauge("drift_feature_p_value", "Per-feature p-value (shift test, or KS), last window",
                                 ["model", "feature"]),
        "z": metrics.gauge("drift_feature_z", "Per-feature robust z of the window mean against the reference "
                                              "period's windows (shift test), last window", ["model", "feature"]),
        "psi": metrics.gauge("drift_feature_psi", "Population stability index per feature, last window",
                             ["model", "feature"]),
        "online": metrics.gauge("drift_online_is_drift", "1 if the online detector flags the stream", ["model"]),
        "alerts": metrics.counter("drift_alerts_total", "Webhook alerts by outcome (sent, failed, dropped)",
                                  ["model", "outcome"]),
        "rejected": metrics.counter("drift_rejected_requests_total", "Requests rejected as bad input",
                                    ["model", "reason"]),
    }


class DriftRuntime(MLModel):
    @classmethod
    def signature(cls, config: DriftSettings, reference: Reference) -> Signature:
        """What ``_decode`` takes and every output a response may hold for these settings: ``is_drift``,
        ``evaluated`` and ``window_rows`` always; a test's detail (one value per configured test, per-feature values
        of ``shift``, ``ks`` and ``psi`` when configured) after a test; the online detector's beside a rolling
        request."""
        one_of, optional = {"one_of": "ohlcv,features"}, {"optional": True}
        tests, features = (len(config.tests),), (len(reference.features),)
        outputs = [TensorSpec("is_drift", "INT32", (1,)), TensorSpec("evaluated", "INT32", (1,)),
                   TensorSpec("test_names", "BYTES", tests, optional),
                   TensorSpec("test_is_drift", "INT32", tests, optional),
                   TensorSpec("test_p_value", "FP64", tests, optional),
                   TensorSpec("test_distance", "FP64", tests, optional),
                   TensorSpec("drifted_features", "BYTES", (-1,), optional)]
        outputs += [TensorSpec(name, "FP64", features, optional) for tests, name in
                    ((("shift", "ks"), "feature_p_value"), (("shift",), "feature_z"), (("psi",), "feature_psi"))
                    if set(tests) & set(config.tests)]
        if config.online:
            outputs += [TensorSpec("online_is_drift", "INT32", (1,), optional),
                        TensorSpec("online_statistic", "FP64", (1,), optional)]
        return Signature(
            inputs=(TensorSpec("ohlcv", "FP32", (-1, -1, 5), one_of),
                    TensorSpec("features", "FP32", (-1, *features), one_of),
                    TensorSpec("dates", "BYTES", (-1,), optional)),
            outputs=(*outputs, TensorSpec("window_rows", "INT32", (1,))))

    async def load(self) -> bool:
        self.config = DriftSettings.from_extra(extra_of(self._settings), self.name)
        uri = await get_model_uri(self._settings)
        self.reference = Reference.load(uri)
        if self.reference.features != FEATURE_NAMES:
            raise InvalidReference(f"{self.name}: the reference was built on other features than "
                                   "seldon_market_ab.features computes; rebuild it with `market-ab reference`")
        if self.config.calibration == "series":
            self._check_series_sizes()
        self.tester = TestRunner(uri, self.reference, self.config)
        self.window: deque = deque(maxlen=self.config.window_size)  # (row, date) of the rolling window
        self._rows_since_test = 0
        self.verdict = False
        self._metrics = _drift_metrics()
        self._metrics["is_drift"].labels(self.name).set(0)
        self.alerts = WebhookAlerts(self.config.webhook_url, self.config.webhook_debounce_seconds,
                                    self.config.webhook_retries, self.config.webhook_timeout_seconds,
                                    lambda outcome: self._metrics["alerts"].labels(self.name, outcome).inc()) \
            if self.config.webhook_url else None
        # starts the process, and warms up (and calibrates) the rolling window's size
        await self.tester.test(self.reference.series[: self.config.window_size])
        serve_signature(self, self.signature(self.config, self.reference))
        return True

    def _check_series_sizes(self) -> None:
        windows = sum(max(len(rows) - self.config.max_window_size + 1, 0) for rows in self.reference.segments())
        if windows < MIN_WINDOWS:
            raise InvalidReference(f"{self.name}: the reference period holds {windows} windows of "
                                   f"{self.config.max_window_size} rows (max_window_size), too few to calibrate them "
                                   f"(at least {MIN_WINDOWS}); lower max_window_size or build a longer reference")
        if self.config.p_value * (windows + 1) < 1:
            raise InvalidReference(f"{self.name}: p_value {self.config.p_value} is below 1 / {windows + 1}, the "
                                   f"smallest p-value {windows} reference windows of {self.config.max_window_size} "
                                   "rows can give: no window could ever drift; raise p_value or lower max_window_size")

    async def unload(self) -> bool:
        if getattr(self, "alerts", None) is not None:
            self.alerts.close()
        if getattr(self, "tester", None) is not None:
            self.tester.close()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            check_request_id(payload)
            rows, dates = self._decode(payload)
            self._check_size(len(rows))
        except InvalidInput as error:
            self._metrics["rejected"].labels(self.name, error.reason).inc()
            raise
        if len(rows) >= self.config.window_size:  # a whole window, as a Seldon step with `batch.size` sends
            outputs = self._verdict(await self.tester.test(rows), dates)
            outputs.append(encode_tensor("window_rows", np.array([len(rows)], np.int32)))
        else:
            outputs = await self._roll(rows, dates)
        return InferenceResponse(id=payload.id, model_name=self.name, model_version=self.version, outputs=outputs)

    async def _roll(self, rows: np.ndarray, dates: list[str]) -> list:
        """A small request: into the online detector, one row at a time, and into the rolling window."""
        outputs = []
        if self.config.online:
            drift, statistic = await self.tester.online(rows)
            self._metrics["online"].labels(self.name).set(drift)
            outputs += [encode_tensor("online_is_drift", np.array([drift], np.int32)),
                        encode_tensor("online_statistic", np.array([statistic], np.float64))]
        self.window.extend(zip(rows, dates, strict=True))
        self._rows_since_test += len(rows)
        due = self._rows_since_test >= (self.config.evaluate_every or self.config.window_size)
        if due and len(self.window) == self.window.maxlen:
            self._rows_since_test = 0
            window, window_dates = np.stack([row for row, _ in self.window]), [date for _, date in self.window]
            outputs = self._verdict(await self.tester.test(window), window_dates) + outputs
        else:
            outputs = [encode_tensor("is_drift", np.array([int(self.verdict)], np.int32)),
                       encode_tensor("evaluated", np.array([0], np.int32))] + outputs
        return outputs + [encode_tensor("window_rows", np.array([len(self.window)], np.int32))]

    def _check_size(self, rows: int) -> None:
        """The series tests are calibrated for windows of ``window_size`` to ``max_window_size`` rows: a longer
        request is refused, never cut."""
        if self.config.calibration == "series" and rows > self.config.max_window_size:
            raise InvalidInput(
                f"a request of {rows} rows: this detector judges windows of {self.config.window_size} to "
                f"{self.config.max_window_size} rows, every row (calibrated on the reference period's windows of "
                f"each size), and rolls fewer than {self.config.window_size} into its window; send at most "
                f"{self.config.max_window_size} rows", "shape")

    def _decode(self, payload: InferenceRequest) -> tuple[np.ndarray, list[str]]:
        """Feature rows ``[n, n_features]`` and their dates (empty strings when the request has none)."""
        width = len(FEATURE_NAMES)
        name, array = decode_float_tensor(
            payload, ("ohlcv", "features"),
            f"'ohlcv' FP32 [batch, >={WARMUP + 1}, 5] (one feature row per window: its last) or 'features' FP32 "
            f"[n, {width}] (features in {', '.join(FEATURE_NAMES[:3])}, ... order), optionally with 'dates' BYTES [n]",
            optional=("dates",))
        if name == "ohlcv":
            ohlcv = check_prices(check_windows(name, array, 5, WARMUP + 1, "open, high, low, close, volume"))
            rows = compute_features(ohlcv[:, -(WARMUP + 1):, :], rows=1)[:, -1, :]
        else:
            if array.ndim != 2 or array.shape[1] != width:
                raise InvalidInput(f"input 'features' must have shape [n, {width}], got {list(array.shape)}", "shape")
            rows = check_windows(name, array[:, None, :], width, 1, "features")[:, 0, :]
        dates = [""] * len(rows)
        if any(i.name == "dates" for i in payload.inputs):
            dates = decode_strings(payload, "dates", "input_name")
            if len(dates) != len(rows):
                raise InvalidInput(f"input 'dates' has {len(dates)} values for {len(rows)} rows", "shape")
        return rows.astype(np.float32), dates

    # verdicts --------------------------------------------------------------------------------------------------

    def _verdict(self, results: dict[str, Result], dates: list[str]) -> list:
        verdict = ensemble({name: r.drift for name, r in results.items()}, self.config.votes)
        names = list(results)
        ranked = self._drifted_features(results)
        for name, result in results.items():
            self._metrics["test_drift"].labels(self.name, name).set(int(result.drift))
            self._metrics["seconds"].labels(self.name, name).observe(result.seconds)
        per_feature = results.get("shift") or results.get("ks")
        if per_feature is not None:
            for feature, value in zip(FEATURE_NAMES, per_feature.feature_p_values, strict=True):
                self._metrics["p_value"].labels(self.name, feature).set(value)
        if "shift" in results:
            for feature, value in zip(FEATURE_NAMES, results["shift"].feature_values, strict=True):
                self._metrics["z"].labels(self.name, feature).set(value)
        if "psi" in results:
            for feature, value in zip(FEATURE_NAMES, results["psi"].feature_values, strict=True):
                self._metrics["psi"].labels(self.name, feature).set(value)
        self._metrics["windows"].labels(self.name, "drift" if verdict else "no_drift").inc()
        self._metrics["is_drift"].labels(self.name).set(int(verdict))
        if verdict != self.verdict and self.alerts is not None:
            known = [d for d in dates if d]
            self.alerts.verdict_changed({
                "model": self.name, "drift": verdict, "previous": self.verdict,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "window": {"rows": len(dates), "first_date": min(known) if known else None,
                           "last_date": max(known) if known else None},
                "tests": {name: {"drift": r.drift, "p_value": None if math.isnan(r.p_value) else r.p_value,
                                 "distance": r.distance} for name, r in results.items()},
                "drifted_features": ranked})
        self.verdict = verdict
        outputs = [
            encode_tensor("is_drift", np.array([int(verdict)], np.int32)),
            encode_tensor("evaluated", np.array([1], np.int32)),
            encode_strings("test_names", names),
            encode_tensor("test_is_drift", np.array([int(results[n].drift) for n in names], np.int32)),
            encode_tensor("test_p_value", np.array([results[n].p_value for n in names], np.float64)),
            encode_tensor("test_distance", np.array([results[n].distance for n in names], np.float64)),
        ]
        if ranked:  # a BYTES output of no strings does not survive every client, so it is left out instead
            outputs.append(encode_strings("drifted_features", ranked))
        if per_feature is not None:
            outputs.append(encode_tensor("feature_p_value", per_feature.feature_p_values))
        if "shift" in results:
            outputs.append(encode_tensor("feature_z", results["shift"].feature_values))
        if "psi" in results:
            outputs.append(encode_tensor("feature_psi", results["psi"].feature_values))
        return outputs

    def _drifted_features(self, results: dict[str, Result]) -> list[str]:
        """Features that any test flags, by how many tests flag them, then by the smallest per-feature p-value,
        then by the largest PSI."""
        flagged = [r.feature_drift for r in results.values() if r.feature_drift is not None]
        if not flagged:
            return []
        votes = np.sum(flagged, axis=0)
        p_values = np.min([r.feature_p_values for r in results.values() if r.feature_p_values is not None] or
                          [np.ones(len(FEATURE_NAMES))], axis=0)
        psi = results["psi"].feature_values if "psi" in results else np.zeros(len(FEATURE_NAMES))
        order = np.lexsort((-psi, p_values, -votes))
        return [FEATURE_NAMES[i] for i in order if votes[i] > 0]
