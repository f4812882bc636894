"""Dataset construction, evaluation statistics, the leakage control and the stored artifacts."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from seldon_market_ab.features import FEATURE_NAMES, compute_features, min_window
from seldon_market_ab.regimes import RegimeThresholds
from seldon_market_ab.training.data import load_instrument
from seldon_market_ab.training.dataset import SPLITS
from seldon_market_ab.training.evaluation import auc, evaluate_group, wilson_interval
from seldon_market_ab.training.report import load_metadata
from seldon_market_ab.training.train import train_classifier, train_models
from seldon_market_ab.training.variants import VARIANTS

from ..conftest import LSTM_NAMES, MODELS


def test_splits_are_chronological_per_instrument_with_a_gap(dataset):
    gap = dataset.dates.gap
    for instrument in ("sp500", "nasdaq", "goog"):
        ends = {s: dataset[s].ohlcv_end[dataset[s].instrument == instrument] for s in SPLITS if
                (dataset[s].instrument == instrument).any()}
        ordered = [ends[s] for s in SPLITS if s in ends]
        for earlier, later in zip(ordered, ordered[1:], strict=False):
            assert later.min() - earlier.max() > gap  # the purge: no sequence spans two splits
    assert dataset["train"].date.max() < np.datetime64(dataset.dates.validation_start)
    assert dataset["test"].date.min() >= np.datetime64(dataset.dates.test_start)


def test_sequences_come_from_one_instrument(dataset):
    test = dataset["test"]
    rng = np.random.default_rng(0)
    for instrument in ("nasdaq", "goog"):
        features = compute_features(load_instrument(instrument).to_numpy())
        for i in rng.choice(np.flatnonzero(test.instrument == instrument), size=5, replace=False):
            end = test.ohlcv_end[i]
            np.testing.assert_allclose(test.features[i], features[end - 29:end + 1], rtol=1e-6)
            close = load_instrument(instrument)["close"].to_numpy()
            assert test.label[i] == float(close[end + 1] > close[end])


def test_scaler_was_fit_on_training_rows_only(dataset, artifacts):
    train_mean = dataset["train"].features.reshape(-1, len(FEATURE_NAMES)).astype(np.float64).mean(axis=0)
    all_mean = np.concatenate([dataset[s].features for s in SPLITS]).reshape(-1, len(FEATURE_NAMES)).mean(axis=0)
    stored = artifacts["baseline"].scaler.mean
    np.testing.assert_allclose(stored, train_mean, rtol=1e-4, atol=1e-6)
    assert not np.allclose(stored, all_mean, rtol=1e-4, atol=1e-6)


def test_auc_and_wilson_against_references():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 500)
    score = np.round(label * 0.3 + rng.normal(0, 1, 500), 1)  # rounded: ties exercise the average ranks
    assert auc(label, score) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    low, high = wilson_interval(52, 100)
    assert (low, high) == pytest.approx((0.4231, 0.6153), abs=2e-4)  # textbook value for 52/100, z = 1.96


def test_evaluation_reports_intervals_and_baselines():
    rng = np.random.default_rng(1)
    n = 400
    label = rng.integers(0, 2, n).astype(float)
    next_return = np.where(label == 1, 1, -1) * rng.uniform(0.001, 0.02, n)
    perfect = evaluate_group(label * 0.8 + 0.1, label, next_return, np.arange(n))
    assert perfect["accuracy"] == 1.0 and perfect["auc"] == 1.0 and perfect["strategy_sharpe"] > 10
    assert perfect["accuracy_ci"][0] > 0.98
    coin = evaluate_group(rng.uniform(size=n), label, next_return, np.arange(n))
    assert coin["auc_ci"][0] < 0.5 < coin["auc_ci"][1]
    assert coin["n"] == n and coin["always_up_accuracy"] == pytest.approx(label.mean())


def _train_and_score(dataset, variant, **kwargs):
    model, scaler, _ = train_classifier(variant, dataset, progress=False, **kwargs)
    test = dataset["test"]
    with torch.inference_mode():
        probability = model(torch.from_numpy(scaler.transform(test.features))).numpy()
    return evaluate_group(probability, test.label, test.next_return, test.date)


FAST = replace(VARIANTS["lightweight"], max_epochs=6, patience=3)


@pytest.mark.slow
def test_shuffled_labels_score_at_chance(dataset):
    """Leakage control: with the labels shuffled nothing is left to learn, so the test period is at chance."""
    result = _train_and_score(dataset, FAST, shuffle_labels=True)
    assert result["auc_ci"][0] < 0.5 < result["auc_ci"][1], result["auc_ci"]
    majority = max(result["always_up_accuracy"], 1 - result["always_up_accuracy"])
    assert result["accuracy"] <= majority + 2 * np.sqrt(0.25 / result["n"])


@pytest.mark.slow
def test_the_leakage_control_catches_a_leaked_label(dataset):
    """The same check fails when tomorrow's move is left among the features, so it can fail at all."""
    leaky = replace(dataset)
    leaky.splits = {}
    for split in SPLITS:
        samples = dataset[split]
        features = samples.features.copy()
        features[:, -1, 0] = samples.next_return  # column 0 (ret_1) of the last row now holds tomorrow's return
        leaky.splits[split] = replace(samples, features=features)
    result = _train_and_score(leaky, FAST)
    assert result["auc_ci"][0] > 0.75


@pytest.mark.parametrize("name", LSTM_NAMES)
def test_stored_artifact_metadata(name):
    meta = load_metadata(MODELS)[name]
    assert meta["name"] == name and meta["version"] == "1"
    assert tuple(meta["features"]) == FEATURE_NAMES
    assert meta["min_window"] == min_window(meta["sequence_length"])
    assert meta["regime_thresholds"] == RegimeThresholds().__dict__
    for split in ("validation", "test"):
        overall = meta["evaluation"][split]["overall"]
        assert overall["n"] > 1000
        assert "always_up_accuracy" in overall and "auc_ci" in overall and "strategy_sharpe_ci" in overall
    assert pd.Timestamp(meta["data"]["train"]["sp500"]["last"]) < pd.Timestamp(meta["data"]["test"]["sp500"]["first"])


def _flatten(tree, path=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _flatten(value, (*path, i))
    else:
        yield path, tree


@pytest.mark.slow
def test_retraining_reproduces_the_stored_evaluation(tmp_path):
    """The README's claim: re-training the smallest variant gives the same epochs, every count and accuracy
    exactly, and every other figure to within float32 rounding of the forward pass."""
    train_models(["lightweight"], tmp_path, progress=False)
    metadata, stored = load_metadata(tmp_path)["lightweight"], load_metadata(MODELS)["lightweight"]
    assert metadata["training"]["best_epoch"] == stored["training"]["best_epoch"]
    assert metadata["training"]["epochs_run"] == stored["training"]["epochs_run"]
    new, old = dict(_flatten(metadata["evaluation"])), dict(_flatten(stored["evaluation"]))
    assert new.keys() == old.keys()
    exact = ("n", "accuracy", "accuracy_ci", "always_up_accuracy", "always_up_accuracy_ci", "predicted_up_share",
             "edge_over_always_up", "strategy_return", "strategy_sharpe", "trading_days")
    for path, value in new.items():
        if path[2] in exact:
            assert value == old[path], path
        else:
            assert value == pytest.approx(old[path], rel=1e-5, abs=1e-6, nan_ok=True), path


def test_the_readme_reading_of_the_evaluation_holds():
    """"No model's overall accuracy is above always-up by more than its interval, the test-period AUCs sit at or
    slightly below 0.5, and validation loss was lowest after the first epoch or two" (README, Evaluation)."""
    for name, meta in load_metadata(MODELS).items():
        overall = meta["evaluation"]["test"]["overall"]
        assert overall["edge_over_always_up_ci"][0] <= 0, name
        assert overall["auc"] <= 0.5 and overall["auc_ci"][1] >= 0.5, name
        assert meta["training"]["best_epoch"] <= 1, name
