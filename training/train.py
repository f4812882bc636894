"""Train, export and evaluate the LSTM variants into MLServer model folders."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from seldon_market_ab.features import FEATURE_NAMES, WARMUP, min_window
from seldon_market_ab.metadata import settings_fields
from seldon_market_ab.regimes import REGIMES, RegimeThresholds
from seldon_market_ab.runtimes.artifact import METADATA_FILE, MODEL_FILE, LSTMArtifact
from seldon_market_ab.runtimes.lstm import LSTMRuntime
from seldon_market_ab.scaling import StandardScaler

from .dataset import SPLITS, MarketDataset, Samples
from .evaluation import evaluate
from .network import LSTMClassifier, ProbabilityModel
from .variants import VARIANTS, Variant

RUNTIME = "seldon_market_ab.runtimes.lstm.LSTMRuntime"


def _sample_weights(samples: Samples, variant: Variant) -> np.ndarray:
    weights = np.ones(len(samples), dtype=np.float32)
    for regime, weight in variant.regime_weights.items():
        weights[samples.regime == REGIMES.index(regime)] = weight
    return weights


def train_classifier(variant: Variant, dataset: MarketDataset, shuffle_labels: bool = False,
                     progress: bool = True) -> tuple[ProbabilityModel, StandardScaler, dict]:
    """Fit one variant with early stopping on validation log-loss.

    ``shuffle_labels`` permutes the training and validation labels: the leakage
    control, whose model must score at chance on the test period.
    """
    torch.manual_seed(variant.seed)
    rng = np.random.default_rng(variant.seed)
    train, validation = dataset["train"], dataset["validation"]
    scaler = StandardScaler.fit(train.features)
    x_train = torch.from_numpy(scaler.transform(train.features))
    x_val = torch.from_numpy(scaler.transform(validation.features))
    y_train, y_val = train.label.copy(), validation.label.copy()
    if shuffle_labels:
        rng.shuffle(y_train)
        rng.shuffle(y_val)
    y_train, y_val = torch.from_numpy(y_train), torch.from_numpy(y_val)
    w_train = torch.from_numpy(_sample_weights(train, variant))

    net = LSTMClassifier(len(FEATURE_NAMES), variant.hidden_size, variant.num_layers, variant.dropout)
    optimiser = torch.optim.Adam(net.parameters(), lr=variant.learning_rate, weight_decay=variant.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    best = {"loss": float("inf"), "epoch": -1, "state": None}
    history = []
    bar = tqdm(range(variant.max_epochs), desc=f"train {variant.name}", disable=not progress, leave=False)
    for epoch in bar:
        net.train()
        order = torch.from_numpy(rng.permutation(len(y_train)))
        total = 0.0
        for start in range(0, len(order), variant.batch_size):
            batch = order[start:start + variant.batch_size]
            loss = (loss_fn(net(x_train[batch]), y_train[batch]) * w_train[batch]).sum() / w_train[batch].sum()
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            total += loss.item() * len(batch)
        net.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(net(x_val), y_val).mean())
        history.append({"epoch": epoch, "train_loss": total / len(order), "validation_loss": val_loss})
        bar.set_postfix(train=f"{total / len(order):.4f}", val=f"{val_loss:.4f}")
        if val_loss < best["loss"] - 1e-5:
            best = {"loss": val_loss, "epoch": epoch, "state": copy.deepcopy(net.state_dict())}
        elif epoch - best["epoch"] >= variant.patience:
            break
    net.load_state_dict(best["state"])
    net.eval()
    summary = {"epochs_run": len(history), "best_epoch": best["epoch"], "best_validation_loss": best["loss"],
               "history": history}
    return ProbabilityModel(net).eval(), scaler, summary


def evaluate_artifact(artifact: LSTMArtifact, samples: Samples) -> dict:
    probability = artifact.predict_features(samples.features)
    return evaluate(probability, samples.label, samples.next_return, samples.instrument, samples.date)


def model_settings(artifact: LSTMArtifact) -> dict:
    """The model-settings.json of an exported artifact, with the inputs and outputs the runtime serves for it
    (its metadata, ``seldon_market_ab.metadata``)."""
    return {
        "name": artifact.name,
        "implementation": RUNTIME,
        "parameters": {
            "uri": "./",
            "version": artifact.version,
            # Tuning lives in `extra`: Seldon's agent keeps it and drops top-level batching fields.
            "extra": {"torch_threads": 1},
        },
        **settings_fields(LSTMRuntime.signature(artifact), artifact.version),
    }


def training_window(dataset: MarketDataset) -> dict:
    """The days a model learnt from: its samples' first and last dates, and the last day any label was read."""
    window = {}
    for split in ("train", "validation"):
        samples = dataset[split]
        window[split] = {"first": str(samples.date.min())[:10], "last": str(samples.date.max())[:10],
                         "last_label": str(samples.label_date.max())[:10], "n": int(len(samples))}
    return {"cut": dataset.dates.cut, **window}


def export(variant: Variant, model: ProbabilityModel, scaler: StandardScaler, training: dict,
           dataset: MarketDataset, folder: Path, version: str = "1", extra: dict | None = None) -> dict:
    """``folder``: the TorchScript module, ``metadata.json`` (its training window, its evaluation on the validation
    and test splits, and ``extra``) and its ``model-settings.json``, as version ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(folder / MODEL_FILE))
    metadata = {
        "name": variant.name,
        "version": str(version),
        "description": variant.description,
        "features": list(FEATURE_NAMES),
        "sequence_length": variant.sequence_length,
        "min_window": min_window(variant.sequence_length),
        "feature_warmup_rows": WARMUP,
        "scaler": scaler.to_dict(),
        "variant": asdict(variant),
        "regime_thresholds": asdict(RegimeThresholds()),
        "data": {"split_dates": asdict(dataset.dates),
                 **{split: dataset[split].summary() for split in SPLITS}},
        "training": training,
        "training_window": training_window(dataset),
        "torch_version": torch.__version__,
        **(extra or {}),
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    artifact = LSTMArtifact.load(folder)  # evaluate exactly what will be served
    metadata["evaluation"] = {split: evaluate_artifact(artifact, dataset[split]) for split in ("validation", "test")}
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    (folder / "model-settings.json").write_text(json.dumps(model_settings(artifact), indent=2) + "\n")
    return metadata


def train_models(names, models_dir: str | Path, progress: bool = True) -> dict[str, dict]:
    models_dir = Path(models_dir)
    dataset_cache: dict[int, MarketDataset] = {}
    out = {}
    for name in tqdm(list(names), desc="models", disable=not progress):
        variant = VARIANTS[name]
        if variant.sequence_length not in dataset_cache:
            dataset_cache[variant.sequence_length] = MarketDataset(variant.sequence_length)
        dataset = dataset_cache[variant.sequence_length]
        started = time.perf_counter()
        model, scaler, training = train_classifier(variant, dataset, progress=progress)
        training["seconds"] = round(time.perf_counter() - started, 1)
        out[name] = export(variant, model, scaler, training, dataset, models_dir / name)
    return out
