"""Evidence for the drift detector on real market history, measured in one run with fixed seeds.

1. False alarms: windows of rows drawn at random from the held-out rows of the reference period, per test and
   for the ensembles, under both calibrations; and windows of consecutive held-out rows, where the i.i.d.
   tests break down and the series calibration is checked out of sample (calibrated on the other instruments).
2. Detection: trailing windows ending on each trading day around five stress episodes, per instrument: the
   share flagged before and after the onset, and the delay in trading days.
3. Timeline: the shipped detector's verdict at every month end of the test period (2012-2018) beside each
   model's realised accuracy that month and the next, and the accuracy difference between flagged and
   unflagged months with a bootstrap interval over instrument-months.
4. Cost per window of each test at 1,000 reference rows x 250 window rows x all features, and what fewer MMD
   permutations cost in power.

    python -m analysis.drift_evidence   # a few minutes: docs/drift-evidence.{json,md} and plots
    market-ab readme                    # renders the README's drift section from the JSON
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from detectors.calibration import SERIES_TESTS, SeriesCalibration, calibrate
from detectors.checks import TESTS, DriftChecks
from detectors.reference import Reference
from detectors.statistics import PSI_MAJOR, ensemble
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.features import compute_features
from training.data import INSTRUMENTS, load_instrument
from training.dataset import MarketDataset
from training.drift_reference import FOLDER
from training.evaluation import wilson_interval
from training.variants import VARIANTS

from .router_evidence import model_correctness

P_VALUE, K = 0.05, 2
SERIES_ENSEMBLE = ("ks", "cvm", "psi")  # the shipped detector's tests
IID_ENSEMBLE = ("ks", "cvm", "mmd", "psi")
EPISODES = {  # onset: the first trading day of the sell-off
    "autumn 2008": "2008-09-15",  # Lehman Brothers' bankruptcy
    "August 2011": "2011-08-01",  # the US debt-ceiling crisis and downgrade
    "August 2015": "2015-08-20",  # the sell-off after the yuan devaluation
    "February 2018": "2018-02-02",  # the volatility spike ("Volmageddon")
    "late 2018": "2018-10-03",  # the fourth-quarter sell-off
}
BEFORE, AFTER = 20, 60  # trading days of windows before and from the onset
TIMELINE = ("2012-01-01", "2018-12-31")
BOOTSTRAP = 2000


def share(flags) -> dict:
    flags = np.asarray(flags, dtype=float)
    low, high = wilson_interval(float(flags.sum()), len(flags))
    return {"share": float(flags.mean()), "low": low, "high": high, "n": len(flags)}


def verdicts(results: dict, series: SeriesCalibration | None) -> dict[str, bool]:
    if series is not None:
        results = series.apply({name: results[name] for name in SERIES_TESTS if name in results}, P_VALUE)
    return {name: result.drift for name, result in results.items()}


class Instruments:
    """Every instrument's feature rows and dates, computed once."""

    def __init__(self):
        self.dates, self.rows = {}, {}
        for name in INSTRUMENTS:
            frame = load_instrument(name)
            self.dates[name] = frame.index
            self.rows[name] = compute_features(frame.to_numpy()).astype(np.float32)

    def trailing(self, name: str, end: int, rows: int) -> np.ndarray:
        return self.rows[name][end - rows + 1:end + 1]


# 1. false alarms --------------------------------------------------------------------------------------------

def false_alarms(reference: Reference, series: SeriesCalibration, rows: int, windows: int, seed: int = 0) -> dict:
    checks = DriftChecks(reference, TESTS, P_VALUE, seed=seed)
    rng = np.random.default_rng(seed)
    iid, calibrated = {name: [] for name in TESTS}, {name: [] for name in SERIES_TESTS}
    iid_ensemble, series_ensemble, psi_band = [], [], []
    for _ in tqdm(range(windows), desc="null windows", mininterval=2):
        results = checks.run(reference.heldout[rng.choice(len(reference.heldout), rows, replace=False)])
        psi_band.append(bool((results["psi"].feature_values > PSI_MAJOR).any()))
        plain, adjusted = verdicts(results, None), verdicts(results, series)
        for name in TESTS:
            iid[name].append(plain[name])
        for name in SERIES_TESTS:
            calibrated[name].append(adjusted[name])
        iid_ensemble.append(ensemble({n: plain[n] for n in IID_ENSEMBLE}, K))
        series_ensemble.append(ensemble({n: adjusted[n] for n in SERIES_ENSEMBLE}, K))
    return {"rows": rows, "windows": windows, "nominal": P_VALUE,
            "iid": {name: share(flags) for name, flags in iid.items()},
            "series": {name: share(flags) for name, flags in calibrated.items()},
            "iid_ensemble": share(iid_ensemble), "series_ensemble": share(series_ensemble),
            "psi_band": {"threshold": PSI_MAJOR, "flagged": share(psi_band)}}


def consecutive_windows(reference: Reference, rows: int, stride: int) -> dict:
    """Windows of consecutive held-out rows: the i.i.d. tests' verdicts, and the series calibration out of
    sample (each instrument's windows judged by a calibration built on the other instruments' windows)."""
    checks = DriftChecks(reference, SERIES_TESTS, P_VALUE)
    heldout_instrument = heldout_instruments(reference)
    distances, iid_flags, window_instrument = {name: [] for name in SERIES_TESTS}, [], []
    for name in tqdm(list(dict.fromkeys(heldout_instrument)), desc="consecutive windows"):
        held = reference.heldout[heldout_instrument == name]
        for start in range(0, len(held) - rows + 1, stride):
            window_instrument.append(name)
            results = checks.run(held[start:start + rows])
            iid_flags.append(ensemble({n: results[n].drift for n in SERIES_ENSEMBLE}, K))
            for test in SERIES_TESTS:
                distances[test].append(results[test].feature_values)
    distances = {test: np.array(values) for test, values in distances.items()}
    instruments = np.asarray(window_instrument)
    out_of_sample = {}
    for name in dict.fromkeys(instruments):
        mine = instruments == name
        calibration = SeriesCalibration.from_metadata(calibrate({t: d[~mine] for t, d in distances.items()}, rows))
        flags = []
        for i in np.flatnonzero(mine):
            z_max = {t: (calibration.tests[t].z(distances[t][i])).max() for t in SERIES_ENSEMBLE}
            flags.append(ensemble({t: z > calibration.tests[t].threshold(P_VALUE) for t, z in z_max.items()}, K))
        out_of_sample[name] = share(flags)
    return {"rows": rows, "stride": stride, "iid_ensemble": share(iid_flags),
            "series_out_of_sample": out_of_sample}


def heldout_instruments(reference: Reference) -> np.ndarray:
    """The instrument of each held-out row: they are in pool order, instrument by instrument."""
    from training.drift_reference import reference_positions, training_period_rows

    rows, instruments, _ = training_period_rows()
    chosen = reference_positions(len(rows), len(reference.rows), reference.metadata["source"]["seed"])
    held = np.setdiff1d(np.arange(len(rows)), chosen)
    if not np.array_equal(rows[held], reference.heldout):
        raise ValueError("the held-out rows differ from the training period's: rebuild the reference")
    return instruments[held]


# 2. detection -----------------------------------------------------------------------------------------------

def detection(reference: Reference, series: SeriesCalibration, data: Instruments, rows: int,
              episodes: dict[str, str] = EPISODES) -> dict:
    checks = DriftChecks(reference, SERIES_ENSEMBLE, P_VALUE)
    out = {}
    for episode, onset in tqdm(episodes.items(), desc="episodes"):
        out[episode] = {"onset": onset}
        for name in INSTRUMENTS:
            dates = data.dates[name]
            start = int(np.searchsorted(dates, pd.Timestamp(onset)))
            if start - BEFORE - rows < 0 or start + AFTER > len(dates):
                continue  # the instrument's history does not cover the episode
            days = range(start - BEFORE, start + AFTER)
            iid_flags, series_flags = [], []
            for end in days:
                results = checks.run(data.trailing(name, end, rows))
                iid_flags.append(ensemble(verdicts(results, None), K))
                series_flags.append(ensemble(verdicts(results, series), K))
            out[episode][name] = {mode: _episode_summary(flags) for mode, flags in
                                  (("iid", iid_flags), ("series", series_flags))}
            out[episode][name]["dates"] = [str(dates[d])[:10] for d in (days[0], days[-1])]
    return out


def _episode_summary(flags: list[bool]) -> dict:
    before, after = np.asarray(flags[:BEFORE]), np.asarray(flags[BEFORE:])
    delay = int(np.argmax(after)) if after.any() else None
    return {"before": share(before), "after": share(after), "delay_days": delay,
            "flags": "".join("1" if f else "0" for f in flags)}


# 3. timeline ------------------------------------------------------------------------------------------------

def timeline(reference: Reference, series: SeriesCalibration, data: Instruments, rows: int, models_dir: Path,
             seed: int = 0) -> dict:
    lengths = {v.sequence_length for v in VARIANTS.values()}
    test = MarketDataset(sequence_length=lengths.pop())["test"]
    correct = model_correctness(models_dir, list(VARIANTS), test)  # [samples, models]
    months = pd.PeriodIndex(pd.DatetimeIndex(test.date), freq="M")
    checks = DriftChecks(reference, SERIES_ENSEMBLE, P_VALUE)
    records = []
    for name in tqdm(INSTRUMENTS, desc="timeline"):
        dates = data.dates[name]
        inside = (dates >= pd.Timestamp(TIMELINE[0])) & (dates <= pd.Timestamp(TIMELINE[1]))
        by_month = pd.Series(np.flatnonzero(inside), index=dates[inside].to_period("M")).groupby(level=0).max()
        for month, end in by_month.items():
            results = checks.run(data.trailing(name, int(end), rows))
            mine = test.instrument == name
            this, following = mine & (months == month), mine & (months == month + 1)
            records.append({
                "instrument": name, "month": str(month),
                "series": bool(ensemble(verdicts(results, series), K)),
                "iid": bool(ensemble(verdicts(results, None), K)),
                "samples": int(this.sum()), "next_samples": int(following.sum()),
                "accuracy": correct[this].mean(axis=0).tolist() if this.any() else None,
                "next_accuracy": correct[following].mean(axis=0).tolist() if following.any() else None,
                "correct": correct[this].sum(axis=0).tolist(), "next_correct": correct[following].sum(axis=0).tolist(),
            })
    comparison = {mode: {key: accuracy_difference(records, mode, key, seed) for key in ("same", "next")}
                  for mode in ("series", "iid")}
    return {"models": list(VARIANTS), "months": records, "comparison": comparison}


def accuracy_difference(records: list[dict], mode: str, key: str, seed: int) -> dict:
    """Accuracy in flagged minus unflagged instrument-months, per model, pooled over each month's predictions,
    with a bootstrap interval that resamples instrument-months (days within a month are not independent)."""
    correct_key, samples_key = ("correct", "samples") if key == "same" else ("next_correct", "next_samples")
    usable = [r for r in records if r[samples_key] > 0]
    flagged = np.array([r[mode] for r in usable])
    out = {"flagged_months": int(flagged.sum()), "unflagged_months": int((~flagged).sum()), "models": {}}
    if flagged.all() or not flagged.any():
        return out  # nothing to compare
    correct = np.array([r[correct_key] for r in usable], dtype=float)  # [months, models]
    samples = np.array([r[samples_key] for r in usable], dtype=float)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(flagged), np.flatnonzero(~flagged)]

    def difference(pick):
        a, b = (correct[g].sum(axis=0) / samples[g].sum() for g in pick)
        return a - b

    point = difference(groups)
    draws = np.array([difference([rng.choice(g, len(g)) for g in groups]) for _ in range(BOOTSTRAP)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    for j, model in enumerate(VARIANTS):
        out["models"][model] = {
            "flagged": float(correct[groups[0], j].sum() / samples[groups[0]].sum()),
            "unflagged": float(correct[groups[1], j].sum() / samples[groups[1]].sum()),
            "difference": float(point[j]), "low": float(low[j]), "high": float(high[j]),
            "flagged_predictions": int(samples[groups[0]].sum()),
            "unflagged_predictions": int(samples[groups[1]].sum())}
    return out


# 4. cost ----------------------------------------------------------------------------------------------------

def cost(reference: Reference, repeats: int, window_rows: int, seed: int = 0) -> dict:
    """Seconds per window at 1,000 x 250 x all features, per test and for each ensemble; and the shipped
    detector's verdict (series tests, statistics only), at 250 rows and at its own window size."""
    rows = 250
    checks = DriftChecks(reference, TESTS, P_VALUE, seed=seed)
    shipped = DriftChecks(reference, SERIES_ENSEMBLE, P_VALUE, seed=seed, statistics_only=True)
    rng = np.random.default_rng(seed)
    seconds = {name: [] for name in TESTS}
    shipped_seconds = {rows: [], window_rows: []}
    for _ in tqdm(range(repeats), desc="cost"):
        for name, result in checks.run(reference.heldout[rng.choice(len(reference.heldout), rows, False)]).items():
            seconds[name].append(result.seconds)
        for size, values in shipped_seconds.items():
            results = shipped.run(reference.heldout[rng.choice(len(reference.heldout), size, False)])
            values.append(sum(result.seconds for result in results.values()))
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    return {"reference_rows": len(reference.rows), "window_rows": rows, "features": reference.rows.shape[1],
            "repeats": repeats, "median_seconds": median,
            "p90_seconds": {name: float(np.percentile(values, 90)) for name, values in seconds.items()},
            "series_verdict_seconds": sum(median[n] for n in SERIES_ENSEMBLE),
            "shipped_verdict_seconds": {str(size): float(np.median(v)) for size, v in shipped_seconds.items()},
            "iid_verdict_seconds": sum(median[n] for n in IID_ENSEMBLE),
            "all_tests_seconds": sum(median.values())}


def mmd_power(reference: Reference, data: Instruments, windows: int, seed: int = 0,
              permutations: tuple[int, ...] = (25, 100), crisis_rows: int = 25) -> dict:
    """Power of MMD on 250-row windows where `crisis_rows` held-out rows are replaced by autumn-2008 S&P 500
    rows, its false alarms on windows of held-out rows alone, and its cost, by number of permutations (100 is
    alibi-detect's default and ours); KS on the same windows for comparison."""
    dates = data.dates["sp500"]
    crisis = data.rows["sp500"][(dates >= pd.Timestamp("2008-09-15")) & (dates < pd.Timestamp("2009-03-31"))]
    out, ks_flags = {}, []
    for count in permutations:
        checks = DriftChecks(reference, ("mmd", "ks"), P_VALUE, mmd_permutations=count, seed=seed)
        rng = np.random.default_rng(seed)  # the same windows for every count
        flags, null_flags, seconds, ks_flags = [], [], [], []
        for _ in tqdm(range(windows), desc=f"MMD, {count} permutations"):
            window = reference.heldout[rng.choice(len(reference.heldout), 250, replace=False)]
            null_flags.append(checks.run(window)["mmd"].drift)
            window[:crisis_rows] = crisis[rng.choice(len(crisis), crisis_rows, replace=False)]
            results = checks.run(window)
            flags.append(results["mmd"].drift)
            seconds.append(results["mmd"].seconds)
            ks_flags.append(results["ks"].drift)
        out[str(count)] = {"power": share(flags), "false_alarms": share(null_flags),
                           "median_seconds": float(np.median(seconds))}
    return {"mix": f"250 rows: {250 - crisis_rows} held-out, {crisis_rows} from the S&P 500 between 2008-09-15 "
                   "and 2009-03-31", "permutations": out, "ks_power": share(ks_flags)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--null-windows", type=int, default=200)
    parser.add_argument("--cost-repeats", type=int, default=20)
    parser.add_argument("--power-windows", type=int, default=100)
    parser.add_argument("--consecutive-stride", type=int, default=0,
                        help="days between windows of consecutive rows (0: the reference's calibration stride)")
    parser.add_argument("--episodes", default=",".join(EPISODES), help="comma-separated, of: " + ", ".join(EPISODES))
    args = parser.parse_args(argv)
    reference = Reference.load(args.models_dir / FOLDER)
    series = SeriesCalibration.from_metadata(reference.series_calibration)
    rows = series.window_rows
    data = Instruments()
    episodes = {name: EPISODES[name] for name in args.episodes.split(",")}
    stride = args.consecutive_stride or reference.series_calibration["stride"]
    started = time.perf_counter()
    results = {
        "reference": {"rows": len(reference.rows), "heldout_rows": len(reference.heldout),
                      "source": reference.metadata["source"], "window_rows": rows,
                      "calibration_windows": reference.series_calibration["windows"],
                      "calibration_stride": reference.series_calibration["stride"]},
        "settings": {"p_value": P_VALUE, "k": K, "series_tests": SERIES_ENSEMBLE, "iid_tests": IID_ENSEMBLE},
        "false_alarms": false_alarms(reference, series, rows, args.null_windows),
        "consecutive": consecutive_windows(reference, rows, stride),
        "detection": detection(reference, series, data, rows, episodes),
        "timeline": timeline(reference, series, data, rows, args.models_dir),
        "cost": cost(reference, args.cost_repeats, rows),
        "mmd_power": mmd_power(reference, data, args.power_windows),
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    from .drift_report import plot, render_markdown

    write_evidence(args.out, "drift-evidence", results, render_markdown)
    plot(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
