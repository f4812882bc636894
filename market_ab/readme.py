"""The README's generated sections, rendered from what the code and the stored results say.

Each section sits between ``<!-- name:start -->`` and ``<!-- name:end -->``. ``market-ab readme``
rewrites them; ``market-ab readme --check`` (and ``tests/test_readme.py``) fails when one is stale.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from analysis import ab_calibration, ab_report, drift_report, stale_features
from analysis.router_evidence import load_results, render_markdown
from detectors.settings import DriftSettings
from loadtest import benchmark, drift_serving, fuzz, gateway_serving, serving_profile
from routers.settings import RegimeRouterSettings, RouterSettings
from runtimes.faults import FaultyLSTMSettings
from runtimes.lstm import LSTMSettings
from seldon_market_ab.features import FEATURE_NAMES, WARMUP, min_window
from seldon_market_ab.settings import markdown_table
from training.data import describe
from training.report import load_metadata
from training.report import markdown_table as evaluation_table
from training.variants import VARIANTS


def data_table() -> str:
    lines = ["| series | source | rows | first | last |", "|---|---|---|---|---|"]
    lines += [f"| `{name}` | {d['source']} | {d['rows']:,} | {d['first']} | {d['last']} |"
              for name, d in describe().items()]
    return "\n".join(lines)


def features_summary() -> str:
    sequence = {variant.sequence_length for variant in VARIANTS.values()}
    lengths = ", ".join(f"sequence length {s} needs `min_window` = {min_window(s)}" for s in sorted(sequence))
    return (f"{len(FEATURE_NAMES)} indicators, in this order: " + ", ".join(f"`{n}`" for n in FEATURE_NAMES)
            + f".\n\n`WARMUP` = {WARMUP} rows; a model with {lengths} rows of OHLCV per request.")


def regime_router_settings_table() -> str:
    """Only what the regime router adds to (or changes in) the Thompson router's settings."""
    return markdown_table(RegimeRouterSettings, RegimeRouterSettings.__annotations__)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def sections(models_dir: Path = Path("models"), docs_dir: Path = Path("docs")) -> dict[str, Callable[[], str]]:
    return {
        "data": data_table,
        "features": features_summary,
        "evaluation": lambda: evaluation_table(load_metadata(models_dir), "test"),
        "settings-lstm": lambda: markdown_table(LSTMSettings),
        "settings-faulty-lstm": lambda: markdown_table(FaultyLSTMSettings, FaultyLSTMSettings.__annotations__),
        "settings-thompson-router": lambda: markdown_table(RouterSettings),
        "settings-regime-router": regime_router_settings_table,
        "settings-drift-detector": lambda: markdown_table(DriftSettings),
        "drift-evidence": lambda: drift_report.render_markdown(_json(docs_dir / "drift-evidence.json")),
        "drift-serving": lambda: drift_serving.render_markdown(_json(docs_dir / "drift-serving.json")),
        # the README links the sample where it lives in the repository, whichever docs_dir was read
        "demo-report": lambda: ab_report.readme_sample(_json(docs_dir / "demo-report" / "report.json"),
                                                       "docs/demo-report"),
        "stale-features": lambda: stale_features.render_markdown(_json(docs_dir / "stale-features.json")),
        "ab-calibration": lambda: ab_calibration.render_markdown(_json(docs_dir / "ab-calibration.json")),
        "gateway-serving": lambda: gateway_serving.render_markdown(_json(docs_dir / "gateway-serving.json")),
        "router-evidence": lambda: render_markdown(load_results(docs_dir / "router-evidence.json")),
        "benchmarks": lambda: benchmark.render_markdown(_json(docs_dir / "benchmarks.json")),
        "serving-profile": lambda: serving_profile.render_markdown(_json(docs_dir / "serving-profile.json")),
        "fuzz": lambda: fuzz.render_markdown(_json(docs_dir / "fuzz.json")),
    }


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section_text(readme: str, name: str) -> str:
    """What the README holds between a section's markers (without the surrounding newlines)."""
    start, end = markers(name)
    if start not in readme or end not in readme:
        raise ValueError(f"the README has no {start} ... {end} section")
    return readme[readme.index(start) + len(start):readme.index(end)].strip("\n")


def render(readme: str, models_dir: Path = Path("models"), docs_dir: Path = Path("docs")) -> str:
    for name, make in sections(models_dir, docs_dir).items():
        start, end = markers(name)
        section_text(readme, name)  # raises when the markers are missing
        head, rest = readme.split(start, 1)
        readme = head + start + "\n" + make() + "\n" + end + rest.split(end, 1)[1]
    return readme


def stale_sections(readme: str, models_dir: Path = Path("models"), docs_dir: Path = Path("docs")) -> list[str]:
    return [name for name, make in sections(models_dir, docs_dir).items() if section_text(readme, name) != make()]
