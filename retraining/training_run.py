"""One retraining, as pure as training allows: train a variant on what was known at a cut, compare it out of sample
with the serving version on the same days after the cut, and register it as the model's next version.

Walk-forward: the cut is ``holdout_days`` trading days before ``as_of`` (the last day the retraining may know); no
training or validation sample reads a row after the cut, its label's row included
(``seldon_market_ab.training.dataset.SplitDates.walk_forward``), and both versions are judged on every day after it up
to ``as_of``. The version registered is the one judged: it is not refit on the held-out days.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.data import load_instrument
from seldon_market_ab.training.dataset import MarketDataset, Samples, SplitDates
from seldon_market_ab.training.evaluation import paired_accuracy_difference, wilson_interval
from seldon_market_ab.training.train import export, train_classifier
from seldon_market_ab.training.variants import VARIANTS

from .registry import register, versions

CALENDAR = "sp500"  # the trading calendar the cut is counted on


class LeakError(AssertionError):
    """A training or validation sample read a row after the cut: the retraining stops before registering."""


@dataclass(frozen=True)
class RetrainPlan:
    variant: str
    as_of: str  # the last day of data the retraining may know: its "today"
    holdout_days: int = 126  # trading days after the cut, on which the two versions are compared
    validation_years: int = 2
    serving_version: int | None = None  # the version compared with (None: the top-level, shipped one)

    def cut(self) -> str:
        """The day ``holdout_days`` trading days before ``as_of``."""
        days = load_instrument(CALENDAR).index
        last = days.searchsorted(pd.Timestamp(self.as_of), side="right") - 1
        if last - self.holdout_days < 0:
            raise ValueError(f"as_of {self.as_of} leaves no data before a {self.holdout_days}-day holdout")
        return str(days[last - self.holdout_days].date())

    def split(self) -> SplitDates:
        end = str((pd.Timestamp(self.as_of) + pd.Timedelta(days=1)).date())
        return SplitDates.walk_forward(self.cut(), self.validation_years, test_end=end)


def check_walk_forward(dataset: MarketDataset) -> None:
    """Raise LeakError unless every training and validation label was read at or before the cut, and every test
    sample comes after it."""
    cut = np.datetime64(dataset.dates.cut)
    for split in ("train", "validation"):
        late = dataset[split].label_date > cut
        if late.any():
            raise LeakError(f"{int(late.sum())} {split} samples read a row after the cut {dataset.dates.cut}")
    if (dataset["test"].date <= cut).any():
        raise LeakError(f"test samples on or before the cut {dataset.dates.cut}")


def compare(new: LSTMArtifact, serving: LSTMArtifact, samples: Samples) -> dict:
    """Both versions on the same samples: each one's accuracy, and the new one's minus the serving one's."""
    correct = {}
    for key, artifact in (("new", new), ("serving", serving)):
        direction = artifact.predict_features(samples.features) > 0.5
        correct[key] = (direction == (samples.label > 0.5)).astype(np.float64)
    out = {key: {"version": artifact.version, "accuracy": float(correct[key].mean()),
                 "accuracy_ci": wilson_interval(correct[key].sum(), len(samples))}
           for key, artifact in (("new", new), ("serving", serving))}
    out["difference"] = paired_accuracy_difference(correct["new"], correct["serving"], samples.date)
    out["days"] = {"first": str(samples.date.min())[:10], "last": str(samples.date.max())[:10]}
    return out


def registered_for(models_dir: Path, variant: str, alert: str) -> dict | None:
    """The record of a version already registered for ``alert`` (a run that crashed before its ledger said so), so
    that it is not trained twice; None when there is none."""
    for version, path in sorted(versions(Path(models_dir) / variant).items(), reverse=True):  # the newest
        metadata = json.loads((path / "metadata.json").read_text())
        retraining = metadata.get("retraining") or {}
        if (retraining.get("trigger") or {}).get("alert") == alert:
            return _record(variant, version, path, metadata)
    return None


def _record(variant: str, version: int, path: Path, metadata: dict) -> dict:
    retraining = metadata["retraining"]
    return {"variant": variant, "version": version, "folder": str(path), "cut": retraining["cut"],
            "as_of": retraining["as_of"], "training_window": metadata["training_window"],
            "comparison": retraining["comparison"], "training_seconds": metadata["training"]["seconds"],
            "versions": sorted(versions(path.parents[1] if path.parent.name == "versions" else path))}


def retrain(plan: RetrainPlan, models_dir: Path, trigger: dict | None = None, progress: bool = True) -> dict:
    """Train, compare with the serving version of ``plan.variant``, and register. Answers the record of the new
    version: its number, folder, training window, comparison and seconds."""
    folder = Path(models_dir) / plan.variant
    if plan.variant not in VARIANTS:
        raise ValueError(f"unknown variant {plan.variant!r}; expected one of {', '.join(VARIANTS)}")
    known = versions(folder)
    if plan.serving_version is not None and plan.serving_version not in known:
        raise ValueError(f"{folder} has no version {plan.serving_version}; it has {sorted(known)}")
    serving = LSTMArtifact.load(known[plan.serving_version] if plan.serving_version is not None else folder)
    variant = VARIANTS[plan.variant]
    dataset = MarketDataset(variant.sequence_length, plan.split())
    check_walk_forward(dataset)
    started = time.perf_counter()
    model, scaler, training = train_classifier(variant, dataset, progress=progress)
    training["seconds"] = round(time.perf_counter() - started, 1)

    def write(staging: Path, version: int) -> dict:
        retraining = {"as_of": plan.as_of, "cut": dataset.dates.cut, "holdout_days": plan.holdout_days,
                      "parent_version": serving.version, "trigger": trigger}
        metadata = export(variant, model, scaler, training, dataset, staging, version=str(version),
                          extra={"retraining": retraining})
        metadata["retraining"]["comparison"] = compare(LSTMArtifact.load(staging), serving, dataset["test"])
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=1))
        return metadata

    version, path, metadata = register(folder, write)
    return _record(plan.variant, version, path, metadata)


