"""How large a fault in the predictions themselves is, and how much traffic the A/B analysis needs to catch it.

The fault: features one day stale (the window ends a day before the day predicted, as a feature pipeline that
lags would serve). On the whole test period, the baseline LSTM is scored on fresh windows and on stale ones, for
the same next-day moves; the accuracy difference, with its paired interval, is the gap such a fault makes. The
simulation of ``seldon_market_ab.analysis.ab_calibration`` then finds the smallest experiment (at the demo's 70/30
split) in which the analysis keeps the baseline against a candidate that much worse, in at least 80% of experiments.

    python -m seldon_market_ab.analysis.stale_features          # about a minute; writes docs/stale-features.json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.dataset import MarketDataset, ohlcv_windows
from seldon_market_ab.training.evaluation import Z95

from .ab_analysis import DecisionPolicy
from .ab_calibration import Scenario, decision_rates

SIZES = (500, 1000, 2000, 4000, 8000, 16000, 32000, 64000)


def accuracy_gap(models_dir: Path, model: str = "baseline") -> dict:
    artifact = LSTMArtifact.load(models_dir / model)
    test = MarketDataset(sequence_length=artifact.sequence_length)["test"]
    fresh, stale = [], []
    for instrument in np.unique(test.instrument):
        index = np.flatnonzero(test.instrument == instrument)
        ends = test.ohlcv_end[index]
        for offset, out in ((0, fresh), (1, stale)):
            windows = ohlcv_windows(str(instrument), ends - offset, artifact.min_window)
            probability = artifact.predict_features(artifact.features_from_ohlcv(windows))
            out.append(((probability > 0.5) == (test.label[index] > 0.5)).astype(float))
    fresh, stale = np.concatenate(fresh), np.concatenate(stale)
    difference = stale - fresh  # paired: the same day, the same next move
    half = Z95 * difference.std(ddof=1) / math.sqrt(len(difference))
    return {"model": model, "n": int(len(difference)), "fresh_accuracy": float(fresh.mean()),
            "stale_accuracy": float(stale.mean()), "gap": float(difference.mean()),
            "gap_ci": [float(difference.mean() - half), float(difference.mean() + half)],
            "disagreement": float((stale != fresh).mean())}


def requests_to_catch(gap: float, experiments: int, seed: int, share: float = 0.8) -> dict:
    """The smallest of ``SIZES`` at which a candidate ``gap`` worse is kept out (``keep_baseline``) in ``share`` of
    simulated experiments, with the rates seen on the way."""
    rates = {}
    for size in SIZES:
        result = decision_rates(Scenario(size, accuracy_gap=gap), experiments, seed, DecisionPolicy())
        rates[size] = result["keep_baseline"]["rate"]
        if rates[size] >= share:
            return {"requests": size, "share": share, "rates": rates}
    return {"requests": None, "share": share, "rates": rates}


def render_markdown(results: dict) -> str:
    gap, catch = results["gap"], results["catch"]
    found = (f"at {catch['requests']:,} requests" if catch["requests"] else
             f"not within {max(int(k) for k in catch['rates']):,} requests")
    return (f"Features one day stale (`python -m seldon_market_ab.analysis.stale_features`"
            f"): on the test period ({gap['n']:,} "
            f"instrument-days) the {gap['model']} LSTM is right {gap['fresh_accuracy']:.1%} of the time on fresh "
            f"windows and {gap['stale_accuracy']:.1%} on windows a day stale, a paired difference of "
            f"{100 * gap['gap']:+.1f} points [{100 * gap['gap_ci'][0]:+.1f}, {100 * gap['gap_ci'][1]:+.1f}] (its "
            f"direction changes on {gap['disagreement']:.0%} of days). Simulated at the demo's 70/30 split "
            f"({results['experiments']} experiments per size), the analysis keeps the baseline against a candidate "
            f"that much worse in {catch['share']:.0%} of experiments {found}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    gap = accuracy_gap(args.models_dir)
    results = {"gap": gap, "experiments": args.experiments,
               "catch": requests_to_catch(min(gap["gap"], 0.0), args.experiments, args.seed)}
    write_evidence(args.out, "stale-features", results, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
