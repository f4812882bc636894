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
