"""Does retraining the baseline LSTM help? A walk-forward study on the test period, 2012-2018.

Three policies serve the ``baseline`` variant day by day on the same instrument-days: sp500 and nasdaq from
2012-01-03 to 2018-12-28 (the last day with a next close). GOOG is left out: its data end on 2013-03-01, so it
would change the mix of instruments a year into the period (its history still trains every model, as it trains
the shipped one).

1. never: the model of the default split (training before 2010, validation 2010-2011), ``train_classifier(
   VARIANTS["baseline"], MarketDataset(30))``: the shipped model. Its cut is 2011-12-31; its last validation
   label, of 2011-12-30, reads the close of 2012-01-03, which is known when 2012-01-03's next move is predicted.
2. drift alerts: retrain when the ``MarketAbInputDrift`` rule would fire, modelled offline:

   - a judgement every ``JUDGE_EVERY`` trading days, counting from 2011-12-30 (the last trading day before the
     test period, inside the never model's validation period), of the trailing ``WINDOW_ROWS`` feature rows of
     sp500 and of nasdaq by the shipped detector (series calibration on ``models/drift-detector``); a judgement
     is flagged when either instrument's window is (the rule takes the ``max`` of the detector's ``is_drift``);
   - ``is_drift`` holds its value until the next judgement, at least ``JUDGE_EVERY`` days later, so the alert
     fires once ``ceil(for / JUDGE_EVERY days)`` consecutive judgements are flagged: with the rule's ``for: 30m``,
     the first flagged one;
   - an alert episode is a run of consecutive flagged judgements that begins after an unflagged one (a run under
     way at the first judgement is not one: the never model's validation saw it);
   - an episode retrains once, at its first judgement on which the alert fires and at least ``COOLDOWN`` trading
     days have passed since the serving model's cut (the never model counting as cut on 2011-12-30); an episode
     that ends inside the cooldown retrains never. The cut is that judgement's day.
3. calendar (the control): cuts on each 30 June and 31 December from 2012-06-30 to 2018-06-30. The half-year cut
   2011-12-31 is the never model's own, so it serves the first half of 2012; a cut on 2018-12-31 would serve no day.

A retrained model is ``train_classifier(VARIANTS["baseline"], MarketDataset(30, SplitDates.walk_forward(cut)))``:
no training or validation label after the cut, validation the two years before it, the variant's seed. It serves
every day after its cut until the next cut, so no day is ever predicted by a model whose cut is on or after it.

Compared per policy: accuracy (Wilson 95%), the annualised Sharpe ratio of the equal-weight portfolio that is long
the instruments predicted up and short those predicted down (95% circular block bootstrap over days, blocks of
``BLOCK_DAYS``), its total return and largest drawdown; the paired differences of each retraining policy against
never (and of alerts against the calendar) in accuracy and Sharpe, with the same block bootstrap resampling the same
days for both; and each year apart.

    python -m seldon_market_ab.analysis.retrain_study   # a few minutes: docs/retrain-study.{json,md,png}
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from arch.bootstrap import CircularBlockBootstrap
from tqdm.auto import tqdm

from seldon_market_ab.detectors.reference import Reference
from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.training.dataset import MarketDataset, Samples, SplitDates
from seldon_market_ab.training.drift_reference import FOLDER
from seldon_market_ab.training.evaluation import _daily_mean, sharpe, wilson_interval
from seldon_market_ab.training.train import train_classifier
from seldon_market_ab.training.variants import VARIANTS

from .drift_evidence import SHIPPED, Detector, Instruments

VARIANT = VARIANTS["baseline"]
SEED = VARIANT.seed
EVALUATED = ("sp500", "nasdaq")  # the instruments with data through 2018
NEVER_CUT = "2011-12-31"  # the default split's: validation 2010-2011
FIRST_JUDGEMENT = "2011-12-30"  # the last trading day before the test period
TEST_END = "2019-01-01"
CALENDAR_CUTS = tuple(f"{year}-{day}" for year in range(2012, 2019) for day in ("06-30", "12-31"))[:-1]
JUDGE_EVERY = 5  # trading days between judgements
WINDOW_ROWS = SHIPPED.window_size
COOLDOWN = 63  # trading days (a quarter) between a model's cut and the next retraining
BLOCK_DAYS = 20  # a month of trading days: returns and errors cluster in volatile stretches
BOOTSTRAP = 2000
ALERT = "MarketAbInputDrift"
RULES = Path(__file__).resolve().parents[1] / "manifests" / "base" / "monitoring" / "prometheusrule.yaml"
POLICIES = ("never", "drift alerts", "calendar")
COMPARISONS = (("drift alerts", "never"), ("calendar", "never"), ("drift alerts", "calendar"))
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# the alert rule ---------------------------------------------------------------------------------------------

def alert_rule(path: Path = RULES, name: str = ALERT) -> dict:
    """The rule's expression and ``for:``, as the manifest has them."""
    document = yaml.safe_load(path.read_text())
    rule = next(r for group in document["spec"]["groups"] for r in group["rules"] if r.get("alert") == name)
    duration = str(rule.get("for", "0s"))
    return {"alert": name, "expr": rule["expr"].strip(), "for": duration,
            "for_seconds": int(duration[:-1]) * SECONDS[duration[-1]]}


def judgements_to_fire(for_seconds: float, gap_seconds: float) -> int:
    """Consecutive flagged judgements before the alert fires: ``is_drift`` holds a verdict for ``gap_seconds``.

    >>> judgements_to_fire(1800, 5 * 86400), judgements_to_fire(0, 86400), judgements_to_fire(7 * 86400, 5 * 86400)
    (1, 1, 2)
    """
    return max(1, math.ceil(for_seconds / gap_seconds))


# the policies' schedules (pure) -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Episode:
    """Judgement indices: the first and last flagged of a run, where the alert fired and where it retrained."""

    start: int
    end: int
    fired: int | None
    retrained: int | None


def alert_episodes(flagged, to_fire: int = 1) -> list[tuple[int, int, int | None]]:
    """``(start, end, fired)`` of each run of flagged judgements that begins after an unflagged one.

    >>> alert_episodes([True, False, True, True, False, True], to_fire=2)
    [(2, 3, 3), (5, 5, None)]
    """
    flagged = np.asarray(flagged, dtype=bool)
    out = []
    for start in np.flatnonzero(flagged[1:] & ~flagged[:-1]) + 1:
        end = int(start)
        while end + 1 < len(flagged) and flagged[end + 1]:
            end += 1
        fired = int(start) + to_fire - 1
        out.append((int(start), end, fired if fired <= end else None))
    return out


def drift_retrainings(flagged, positions, cooldown: int = COOLDOWN, to_fire: int = 1) -> list[Episode]:
    """Each alert episode and the judgement it retrains at, if any: the first one from where the alert fires on
    which ``cooldown`` trading days (``positions``) have passed since the last cut, the first judgement's day
    counting as the first cut.

    >>> [e.retrained for e in drift_retrainings([0, 1, 0, 1, 1, 0, 1], [0, 10, 20, 30, 70, 80, 200], cooldown=63)]
    [None, 4, 6]
    """
    positions = np.asarray(positions)
    last_cut, out = positions[0], []
    for start, end, fired in alert_episodes(flagged, to_fire):
        retrained = None
        if fired is not None:
            ready = [i for i in range(fired, end + 1) if positions[i] - last_cut >= cooldown]
            if ready:
                retrained = ready[0]
                last_cut = positions[retrained]
        out.append(Episode(start, end, fired, retrained))
    return out


def serving_model(days, cuts) -> np.ndarray:
    """Index into ``cuts`` (sorted) of the model serving each day: the latest cut strictly before it.

    >>> serving_model(pd.to_datetime(["2012-01-03", "2012-07-02", "2012-07-03"]),
    ...               pd.to_datetime(["2011-12-31", "2012-07-02"])).tolist()
    [0, 0, 1]
    """
    days, cuts = pd.DatetimeIndex(days), pd.DatetimeIndex(cuts)
    if not cuts.is_monotonic_increasing or (len(days) and cuts[0] >= days.min()):
        raise ValueError("cuts must be sorted, the first before every day")
    return np.searchsorted(cuts, days, side="left") - 1


# statistics (pure) --------------------------------------------------------------------------------------------

def daily_outcomes(probability, samples: Samples) -> dict[str, np.ndarray]:
    """Per trading day, in date order: the share of instruments predicted right and the return of the equal-weight
    portfolio long the instruments predicted up and short those predicted down."""
    up = np.asarray(probability) > 0.5
    correct = (up == samples.label.astype(bool)).astype(np.float64)
    position = np.where(up, 1.0, -1.0)
    return {"day": np.unique(samples.date), "correct": _daily_mean(correct, samples.date),
            "strategy": _daily_mean(position * samples.next_return, samples.date),
            "predictions": np.bincount(np.unique(samples.date, return_inverse=True)[1])}


def same_direction(probability, other) -> float:
    """The share of predictions in which two models call the same direction."""
    return float(np.mean((np.asarray(probability) > 0.5) == (np.asarray(other) > 0.5)))


def max_drawdown(daily_returns) -> float:
    """The largest fall of the compounded equity from its running peak, as a fraction of the peak.

    >>> round(max_drawdown([0.1, -0.5, 0.2]), 3)
    0.5
    """
    equity = np.cumprod(1 + np.r_[0.0, np.asarray(daily_returns, dtype=np.float64)])
    return float(np.max(1 - equity / np.maximum.accumulate(equity)))


def block_interval(statistic, *series, block: int = BLOCK_DAYS, reps: int = BOOTSTRAP,
                   seed: int = SEED) -> list[list[float]]:
    """95% percentile intervals of each value ``statistic(*series)`` returns, from a circular block bootstrap
    that resamples the same blocks of days in every series (so differences stay paired)."""
    bootstrap = CircularBlockBootstrap(block, *[np.asarray(s, dtype=np.float64) for s in series], seed=seed)
    draws = bootstrap.apply(lambda *xs: np.atleast_1d(statistic(*xs)), reps)
    low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return [[float(a), float(b)] for a, b in zip(low, high, strict=True)]


def policy_summary(outcome: dict, block: int, reps: int) -> dict:
    correct, strategy = outcome["correct"] * outcome["predictions"], outcome["strategy"]
    n = int(outcome["predictions"].sum())
    (sharpe_ci,) = block_interval(sharpe, strategy, block=block, reps=reps)
    return {"n": n, "days": len(strategy), "accuracy": float(correct.sum() / n),
            "accuracy_ci": list(wilson_interval(float(correct.sum()), n)),
            "sharpe": sharpe(strategy), "sharpe_ci": sharpe_ci,
            "total_return": float(np.prod(1 + strategy) - 1), "max_drawdown": max_drawdown(strategy)}


def paired_difference(outcome: dict, baseline: dict, block: int, reps: int) -> dict:
    """Accuracy and Sharpe of one policy minus another's on the same days. Every day has the same instruments in
    both, so the difference of the days' mean correctness is the difference of the pooled accuracies."""
    if not np.array_equal(outcome["day"], baseline["day"]):
        raise ValueError("the policies must be scored on the same days")

    def differences(correct, strategy, other_correct, other_strategy):
        return [np.mean(correct - other_correct), sharpe(strategy) - sharpe(other_strategy)]

    series = (outcome["correct"], outcome["strategy"], baseline["correct"], baseline["strategy"])
    accuracy, sharpe_difference = differences(*series)
    accuracy_ci, sharpe_ci = block_interval(differences, *series, block=block, reps=reps)
    return {"accuracy": float(accuracy), "accuracy_ci": accuracy_ci,
            "sharpe": float(sharpe_difference), "sharpe_ci": sharpe_ci}


def per_year(outcomes: dict[str, dict], cuts: dict[str, list[str]]) -> list[dict]:
    """Each calendar year: every policy's accuracy and Sharpe, and the retrainings whose cut falls in it."""
    days = pd.DatetimeIndex(next(iter(outcomes.values()))["day"])
    out = []
    for year in sorted(set(days.year)):
        mine = days.year == year
        row = {"year": int(year), "days": int(mine.sum()), "policies": {}}
        for policy, outcome in outcomes.items():
            n = outcome["predictions"][mine]
            row["policies"][policy] = {
                "n": int(n.sum()), "accuracy": float((outcome["correct"][mine] * n).sum() / n.sum()),
                "sharpe": sharpe(outcome["strategy"][mine]),
                "retrainings": sum(1 for cut in cuts[policy][1:] if pd.Timestamp(cut).year == year)}
        out.append(row)
    return out


# the run (I/O) --------------------------------------------------------------------------------------------------

def training_data(cut: str | None) -> MarketDataset:
    """The data of the never model (``None``: the default split) or of a retraining at ``cut``."""
    return MarketDataset(VARIANT.sequence_length, SplitDates.walk_forward(cut) if cut else SplitDates())


def predicted_days() -> Samples:
    """The instrument-days every policy predicts: sp500 and nasdaq from the first trading day of 2012, no gap."""
    dates = SplitDates.walk_forward(NEVER_CUT, test_end=TEST_END)
    return MarketDataset(VARIANT.sequence_length, dates, instruments=EVALUATED)["test"]


def train_at(cut: str | None) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()  # CPU time: wall time varies with the load
    dataset = training_data(cut)
    model, scaler, summary = train_classifier(VARIANT, dataset, progress=False)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"model": model, "scaler": scaler,
            "record": {"cut": cut or NEVER_CUT, "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
                       "epochs_run": summary["epochs_run"],
                       "best_epoch": summary["best_epoch"], "train_samples": len(dataset["train"]),
                       "validation_samples": len(dataset["validation"]),
                       "last_label": str(max(dataset[s].label_date.max() for s in ("train", "validation")))[:10]}}


def predict(trained: dict, features: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return trained["model"](torch.from_numpy(trained["scaler"].transform(features))).numpy()


def judge(data: Instruments, detector: Detector, days: pd.DatetimeIndex, progress: bool) -> np.ndarray:
    """``[days, instruments]``: the shipped detector's verdict on the trailing window of each evaluated index."""
    flags = np.zeros((len(days), len(EVALUATED)), dtype=bool)
    for i, day in enumerate(tqdm(days, desc="drift verdicts", disable=not progress, mininterval=1)):
        for j, name in enumerate(EVALUATED):
            end = int(data.dates[name].get_loc(day))  # the indices share a calendar: a missing day raises
            flags[i, j] = detector(data.trailing(name, end, WINDOW_ROWS))
    return flags


def run(models_dir: Path, block: int = BLOCK_DAYS, reps: int = BOOTSTRAP, progress: bool = True) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    rule = alert_rule()
    to_fire = judgements_to_fire(rule["for_seconds"], JUDGE_EVERY * SECONDS["d"])
    data, detector = Instruments(), Detector.on(Reference.load(models_dir / FOLDER))
    calendar = data.dates[EVALUATED[0]]
    first = int(calendar.get_loc(pd.Timestamp(FIRST_JUDGEMENT)))
    positions = np.arange(first, int(np.searchsorted(calendar, pd.Timestamp(TEST_END))), JUDGE_EVERY)
    judged_days = calendar[positions]
    verdict_started = time.perf_counter()
    by_instrument = judge(data, detector, judged_days, progress)
    verdict_seconds = time.perf_counter() - verdict_started
    flagged = by_instrument.any(axis=1)
    episodes = drift_retrainings(flagged, positions, COOLDOWN, to_fire)

    def day(i: int) -> str:
        return str(judged_days[i].date())

    cuts = {"never": [NEVER_CUT], "calendar": [NEVER_CUT, *CALENDAR_CUTS],
            "drift alerts": [NEVER_CUT, *(day(e.retrained) for e in episodes if e.retrained is not None)]}
    trained = {NEVER_CUT: train_at(None)}
    for cut in tqdm(sorted({c for policy in cuts.values() for c in policy[1:]}), desc="retrainings",
                    disable=not progress):
        trained[cut] = train_at(cut)

    samples = predicted_days()
    outcomes, probabilities = {}, {}
    for policy in POLICIES:
        serving = serving_model(samples.date, pd.to_datetime(cuts[policy]))
        probability = np.full(len(samples), np.nan, dtype=np.float32)
        for index, cut in enumerate(cuts[policy]):
            mine = serving == index
            if mine.any():
                probability[mine] = predict(trained[cut], samples.features[mine])
        probabilities[policy], outcomes[policy] = probability, daily_outcomes(probability, samples)

    results = {
        "variant": VARIANT.name, "seed": SEED, "instruments": list(EVALUATED),
        "period": {"first": str(samples.date.min())[:10], "last": str(samples.date.max())[:10],
                   "days": len(outcomes["never"]["day"]), "instrument_days": len(samples),
                   "always_up_accuracy": float(samples.label.mean())},
        "rule": {**rule, "judge_every_days": JUDGE_EVERY, "window_rows": WINDOW_ROWS, "judgements_to_fire": to_fire,
                 "cooldown_days": COOLDOWN, "first_judgement": FIRST_JUDGEMENT},
        "judgements": {"n": len(judged_days), "flagged": int(flagged.sum()),
                       "flagged_by_instrument": {name: int(by_instrument[:, j].sum())
                                                 for j, name in enumerate(EVALUATED)},
                       "under_way_at_start": bool(flagged[0])},
        "episodes": [{"start": day(e.start), "last_flagged": day(e.end), "judgements": e.end - e.start + 1,
                      "end": day(e.end + 1) if e.end + 1 < len(judged_days) else None,
                      "fired": day(e.fired) if e.fired is not None else None,
                      "retrained": day(e.retrained) if e.retrained is not None else None} for e in episodes],
        "cuts": cuts,
        "calendar_cuts": list(CALENDAR_CUTS),
        "trainings": [trained[cut]["record"] for cut in trained],
        "policies": {policy: {**policy_summary(outcomes[policy], block, reps), "retrainings": len(cuts[policy]) - 1,
                              "predicted_up_share": float(np.mean(probabilities[policy] > 0.5))}
                     for policy in POLICIES},
        "differences": {f"{a} - {b}": {**paired_difference(outcomes[a], outcomes[b], block, reps),
                                       "same_direction_share": same_direction(probabilities[a], probabilities[b])}
                        for a, b in COMPARISONS},
        "per_year": per_year(outcomes, cuts),
        "shipped_check": shipped_check(models_dir, probabilities["never"], samples),
        "bootstrap": {"block_days": block, "reps": reps, "seed": SEED},
        "daily": {"day": [str(d)[:10] for d in outcomes["never"]["day"]],
                  "strategy": {p: [round(float(r), 7) for r in outcomes[p]["strategy"]] for p in POLICIES}},
    }
    results["seconds"] = {"verdicts": round(verdict_seconds, 1),
                          "training": round(sum(t["record"]["seconds"] for t in trained.values()), 1),
                          "training_cpu": round(sum(t["record"]["cpu_seconds"] for t in trained.values()), 1),
                          "total": round(time.perf_counter() - started, 1),
                          "total_cpu": round(time.process_time() - cpu_started, 1),
                          "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    return results


def shipped_check(models_dir: Path, probability: np.ndarray, samples: Samples) -> dict:
    """How far the never model trained here is from the shipped ``models/baseline`` on the same days."""
    from seldon_market_ab.runtimes.artifact import LSTMArtifact

    shipped = LSTMArtifact.load(models_dir / VARIANT.name).predict_features(samples.features)
    return {"max_abs_probability_difference": float(np.max(np.abs(shipped - probability))),
            "same_direction_share": same_direction(shipped, probability)}


# the document ---------------------------------------------------------------------------------------------------

def _interval(value: float, ci, scale: float = 1.0, digits: int = 1, sign: str = "") -> str:
    return f"{scale * value:{sign}.{digits}f} [{scale * ci[0]:{sign}.{digits}f}, {scale * ci[1]:{sign}.{digits}f}]"


def _direction(ci) -> int:
    """+1 when the interval lies above 0, -1 below, 0 when it includes 0."""
    return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0


def conclusion(results: dict) -> str:
    """The paragraph the numbers support: which differences' intervals exclude 0, and which way."""
    policies, differences = results["policies"], results["differences"]
    words = {1: "higher, the interval above 0", -1: "lower, the interval below 0", 0: "the interval includes 0"}
    sentences, found = [], []
    for a, b in COMPARISONS:
        d = differences[f"{a} - {b}"]
        retrained = (f" ({policies[a]['retrainings']} retrainings)" if b == "never" else "")
        sentences.append(
            f"Retraining {'at drift alerts' if a == 'drift alerts' else 'on the calendar'}{retrained}, against "
            f"{'never retraining' if b == 'never' else 'the calendar'}: accuracy {100 * d['accuracy']:+.1f} pp "
            f"({words[_direction(d['accuracy_ci'])]}), Sharpe {d['sharpe']:+.2f} "
            f"({words[_direction(d['sharpe_ci'])]}).")
        found += [(a, b, metric, _direction(d[f"{metric}_ci"])) for metric in ("accuracy", "sharpe")
                  if _direction(d[f"{metric}_ci"])]
    period = f"{results['period']['first'][:4]}-{results['period']['last'][:4]}"
    resampling = (f"{results['period']['days']} days resampled in blocks of "
                  f"{results['bootstrap']['block_days']}")
    if not found:
        sentences.append(f"So on {period} this is no evidence that retraining the baseline helps or hurts, at "
                         f"alerts or on a calendar: every difference is within what {resampling} produce.")
    else:
        named = "; ".join(f"{a} {'beats' if sign > 0 else 'trails'} {b} on {metric}" for a, b, metric, sign in found)
        sentences.append(f"On {period}, with {resampling}, the intervals that exclude 0: {named}; the others "
                         "include it.")
    # what the models are next to the simplest rule: retraining a model that says "up" changes little
    up = [p["predicted_up_share"] for p in policies.values()]
    always_up = results["period"]["always_up_accuracy"]
    beaten = [name for name, p in policies.items() if p["accuracy_ci"][0] > always_up]
    sentences.append(
        f"Every policy predicts up on {100 * min(up):.0f}-{100 * max(up):.0f}% of instrument-days, and always "
        f"predicting up scores {100 * always_up:.1f}%, "
        + (f"below the lower bound of {', '.join(beaten)}." if beaten else
           "inside or above every policy's accuracy interval: no policy is shown to beat it."))
    return " ".join(sentences)


def render(results: dict) -> str:
    rule, policies = results["rule"], results["policies"]
    fire = ("the first flagged judgement" if rule["judgements_to_fire"] == 1
            else f"{rule['judgements_to_fire']} consecutive flagged judgements")
    episodes, period, seconds = results["episodes"], results["period"], results["seconds"]
    lines = [
        "## Does retraining help? A walk-forward study",
        "",
        f"Generated by `python -m seldon_market_ab.analysis.retrain_study` "
        f"(seed {results['seed']}; {seconds['total']:.0f} s wall, "
        f"{seconds['total_cpu']:.0f} s CPU on {seconds['cores']} cores, torch threads {seconds['torch_threads']}; "
        f"training {seconds['training']:.0f} s wall, {seconds['training_cpu']:.0f} s CPU; drift verdicts "
        f"{seconds['verdicts']:.0f} s). The "
        f"`{results['variant']}` variant serves {', '.join(results['instruments'])} each trading day from "
        f"{period['first']} to {period['last']} ({period['instrument_days']:,} instrument-days, {period['days']:,} "
        "days) under three policies; a model serves the days after its cut until the next cut, and a retraining at "
        "a cut uses `SplitDates.walk_forward(cut)`: no training or validation label after it, validation the two "
        "years before it. GOOG is left out: its data end in March 2013. `never` is the shipped model (default "
        "split, cut 2011-12-31; its last validation label is the close of 2012-01-03, known when that day's next "
        "move is predicted; trained here, it matches the shipped "
        f"`models/{results['variant']}` to {results['shipped_check']['max_abs_probability_difference']:.1e} in "
        "probability).",
        "",
        f"**The alert rule.** `{rule['alert']}` fires when `{rule['expr']}` for `{rule['for']}`. Offline: every "
        f"{rule['judge_every_days']} trading days from {rule['first_judgement']}, the shipped detector judges the "
        f"trailing {rule['window_rows']} rows of each index; a judgement is flagged when either is. A verdict holds "
        f"until the next, so the alert fires on {fire} of a run. An episode is a run of flagged judgements after an "
        f"unflagged one; it retrains once, at its first judgement where the alert fires and at least "
        f"{rule['cooldown_days']} trading days have passed since the serving model's cut (the shipped model's "
        f"counting as {rule['first_judgement']}); the cut is that day. The calendar control cuts on "
        f"{results['calendar_cuts'][0]}, {results['calendar_cuts'][1]}, ... {results['calendar_cuts'][-1]} (each "
        "30 June and 31 December; 2011-12-31 is the shipped model's own cut). The detector's reference stays the "
        "shipped one (the training period before 2010) after every retraining, as it does in the product: later "
        "alerts measure drift from that period, not from the serving model's own training window.",
        "",
        f"{results['judgements']['n']} judgements, {results['judgements']['flagged']} flagged ("
        + ", ".join(f"{name} {n}" for name, n in results["judgements"]["flagged_by_instrument"].items())
        + f"); {len(episodes)} alert episodes, {sum(1 for e in episodes if e['retrained'])} of them retrained"
        + ("; a run was under way at the first judgement and is not an episode." if
           results["judgements"]["under_way_at_start"] else "."),
        "",
        f"Intervals are 95%: Wilson for accuracy (instrument-days as independent, so too narrow if anything); a "
        f"circular block bootstrap over days ({results['bootstrap']['block_days']}-day blocks, "
        f"{results['bootstrap']['reps']} resamples, the same days for both sides of a difference) for the Sharpe "
        "ratio and the differences. Strategy: each day, long the instruments predicted up and short the others, "
        f"equal weight, no costs. Always predicting up scores {100 * period['always_up_accuracy']:.1f}% "
        "on the same instrument-days.",
        "",
        "| policy | instrument-days | accuracy [95%] | predicted up | Sharpe [95%] | total return | max drawdown "
        "| retrainings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in policies.items():
        lines.append(f"| {name} | {p['n']:,} | {_interval(p['accuracy'], p['accuracy_ci'], 100)}% | "
                     f"{100 * p['predicted_up_share']:.0f}% | {_interval(p['sharpe'], p['sharpe_ci'], digits=2)} | "
                     f"{100 * p['total_return']:+.1f}% | {100 * p['max_drawdown']:.1f}% | {p['retrainings']} |")
    lines += ["", "| paired difference | accuracy, pp [95%] | Sharpe [95%] | same predicted direction |",
              "|---|---|---|---|"]
    for name, d in results["differences"].items():
        lines.append(f"| {name} | {_interval(d['accuracy'], d['accuracy_ci'], 100, sign='+')} | "
                     f"{_interval(d['sharpe'], d['sharpe_ci'], digits=2, sign='+')} | "
                     f"{100 * d['same_direction_share']:.0f}% |")
    lines += ["", "Per year (point estimates; a year's ~250 days leave wide intervals):", "",
              "| year | days | " + " | ".join(f"{p} accuracy" for p in POLICIES) + " | "
              + " | ".join(f"{p} Sharpe" for p in POLICIES) + " | retrainings (alerts, calendar) |",
              "|---" * (3 + 2 * len(POLICIES)) + "|"]
    for row in results["per_year"]:
        values = row["policies"]
        lines.append(f"| {row['year']} | {row['days']} | "
                     + " | ".join(f"{100 * values[p]['accuracy']:.1f}%" for p in POLICIES) + " | "
                     + " | ".join(f"{values[p]['sharpe']:.2f}" for p in POLICIES) + " | "
                     f"{values['drift alerts']['retrainings']}, {values['calendar']['retrainings']} |")
    lines += ["", "Alert episodes (judgement days):", "",
              "| start | last flagged | flagged judgements | retrained at |", "|---|---|---|---|"]
    for e in episodes:
        lines.append(f"| {e['start']} | {e['last_flagged']} | {e['judgements']} | "
                     f"{(e['retrained'] or 'no (cooldown)') if e['fired'] else 'no (did not fire)'} |")
    lines += ["", "Trainings (the shipped model's first):", "",
              "| cut | policy | seconds (CPU) | epochs (best) | training samples | validation samples | last label |",
              "|---|---|---|---|---|---|---|"]
    for t in results["trainings"]:
        users = [p for p, cuts in results["cuts"].items() if t["cut"] in cuts[1:]] or ["never"]
        lines.append(f"| {t['cut']} | {', '.join(users)} | {t['seconds']:.1f} ({t['cpu_seconds']:.1f}) | "
                     f"{t['epochs_run']} ({t['best_epoch'] + 1}) | {t['train_samples']:,} | "
                     f"{t['validation_samples']:,} | {t['last_label']} |")
    lines += ["", "![cumulative strategy return of the three policies](retrain-study.png)", "",
              f"**Conclusion.** {conclusion(results)}"]
    return "\n".join(lines)


def plot(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = pd.to_datetime(results["daily"]["day"])
    colours = dict(zip(POLICIES, ("black", "tab:red", "tab:blue"), strict=True))
    fig, axis = plt.subplots(figsize=(12, 5))
    for episode in results["episodes"]:
        axis.axvspan(pd.Timestamp(episode["start"]), pd.Timestamp(episode["end"] or days[-1]), color="tab:orange",
                     alpha=0.2, linewidth=0, label="alert episode" if episode is results["episodes"][0] else None)
    for policy in POLICIES:
        equity = np.cumprod(1 + np.asarray(results["daily"]["strategy"][policy])) - 1
        axis.plot(days, 100 * equity, color=colours[policy], linewidth=1.2, label=policy)
        for k, cut in enumerate(results["cuts"][policy][1:]):
            axis.axvline(pd.Timestamp(cut), color=colours[policy], linewidth=0.8, alpha=0.7,
                         linestyle="-" if policy == "drift alerts" else "--",
                         label=f"{policy} cut" if k == 0 else None)
    axis.axhline(0, color="grey", linewidth=0.6)
    axis.set(ylabel="cumulative return, %", title=f"{results['variant']}: long/short by predicted direction, "
             f"{', '.join(results['instruments'])}, equal weight, no costs")
    axis.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out_dir / "retrain-study.png", dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--block-days", type=int, default=BLOCK_DAYS)
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="one: the small LSTM's threads otherwise spin-wait for each other on a busy machine "
                             "(several times slower; the predictions were identical with two)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    results = run(args.models_dir, args.block_days, args.bootstrap)
    write_evidence(args.out, "retrain-study", results, render)
    plot(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
