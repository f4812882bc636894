"""The evaluation table, read from the ``metadata.json`` files that training wrote."""

from __future__ import annotations

import json
from pathlib import Path

from .variants import VARIANTS


def load_metadata(models_dir: str | Path) -> dict[str, dict]:
    out = {}
    for name in VARIANTS:
        path = Path(models_dir) / name / "metadata.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


def _pct(value, interval=None) -> str:
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else "")


def _num(value, interval=None, digits=2) -> str:
    text = f"{value:.{digits}f}"
    return text + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")


COLUMNS = ("model", "data", "n", "accuracy % [95% CI]", "always-up %", "edge pp [95% CI]", "AUC [95% CI]",
           "log-loss", "Brier", "up share %", "Sharpe [95% CI]", "buy&hold Sharpe", "return %", "buy&hold return %")


def evaluation_rows(metadata: dict[str, dict], split: str = "test") -> list[tuple[str, ...]]:
    rows = []
    for name, meta in metadata.items():
        for group, m in meta["evaluation"][split].items():
            rows.append((
                name, group, str(m["n"]), _pct(m["accuracy"], m["accuracy_ci"]), _pct(m["always_up_accuracy"]),
                _pct(m["edge_over_always_up"], m["edge_over_always_up_ci"]), _num(m["auc"], m["auc_ci"], 3),
                _num(m["log_loss"], digits=4), _num(m["brier"], digits=4), _pct(m["predicted_up_share"]),
                _num(m["strategy_sharpe"], m["strategy_sharpe_ci"]), _num(m["buy_and_hold_sharpe"]),
                _pct(m["strategy_return"]), _pct(m["buy_and_hold_return"]),
            ))
    return rows


def markdown_table(metadata: dict[str, dict], split: str = "test") -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in evaluation_rows(metadata, split)]
    return "\n".join(lines)


def text_table(metadata: dict[str, dict], split: str = "test") -> str:
    rows = [COLUMNS, *evaluation_rows(metadata, split)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def plot_evaluation(metadata: dict[str, dict], path: str | Path, split: str = "test") -> Path:
    """Accuracy and AUC with 95% intervals per model and instrument, against always-up and chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(next(iter(metadata.values()))["evaluation"][split])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    names = list(metadata)
    for axis, key, reference, title in ((axes[0], "accuracy", "always_up_accuracy", "accuracy vs always-up"),
                                        (axes[1], "auc", None, "AUC vs chance (0.5)")):
        for g, group in enumerate(groups):
            for m, name in enumerate(names):
                stats = metadata[name]["evaluation"][split][group]
                y = g * (len(names) + 1) + m
                low, high = stats[f"{key}_ci"]
                axis.errorbar(stats[key], y, xerr=[[stats[key] - low], [high - stats[key]]], fmt="o",
                              color=f"C{m}", label=name if g == 0 else None, capsize=2)
            baseline = stats[reference] if reference else 0.5
            top = g * (len(names) + 1)
            axis.plot([baseline, baseline], [top - 0.5, top + len(names) - 0.5], color="black", lw=1.5)
        axis.set_title(f"{title}, {split} period, 95% intervals")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks([g * (len(names) + 1) + (len(names) - 1) / 2 for g in range(len(groups))])
    axes[0].set_yticklabels([f"{g}\nn={metadata[names[0]]['evaluation'][split][g]['n']}" for g in groups])
    axes[0].invert_yaxis()
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.text(0.5, 0.01, "black bars: always-up accuracy (left) and chance (right)", ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
