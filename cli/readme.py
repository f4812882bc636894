"""The generated sections of the README and the docs pages, rendered from what the code and the stored results say.

Each section sits between ``<!-- name:start -->`` and ``<!-- name:end -->``, in exactly one document (the README or
a page of ``docs/``). ``market-ab readme`` rewrites them; ``market-ab readme --check`` (and
``tests/e2e/test_readme.py``) fails when one is stale, missing or in two places.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from seldon_market_ab.analysis import ab_calibration, drift_report, report, stale_features
from seldon_market_ab.analysis.router_evidence import load_results, render_markdown
from seldon_market_ab.detectors.settings import DriftSettings
from seldon_market_ab.features import FEATURE_NAMES, WARMUP, min_window
from seldon_market_ab.loadtest import benchmark, drift_serving, fuzz, gateway_serving, serving_profile
from seldon_market_ab.rollouts import calibration as rollout_calibration
from seldon_market_ab.rollouts.document import fields_table as rollout_fields
from seldon_market_ab.routers.outcomes import OutcomesSettings
from seldon_market_ab.routers.settings import RegimeRouterSettings, RouterSettings
from seldon_market_ab.runtimes.faults import FaultyLSTMSettings
from seldon_market_ab.runtimes.lstm import LSTMSettings
from seldon_market_ab.settings import markdown_table
from seldon_market_ab.training.data import describe
from seldon_market_ab.training.report import load_metadata
from seldon_market_ab.training.report import markdown_table as evaluation_table
from seldon_market_ab.training.variants import VARIANTS


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


def metadata_table(models_dir: Path) -> str:
    """Every model's metadata as its model-settings.json declares it (tests/integration/test_model_metadata.py holds
    the files to what the runtimes serve); models that declare the same tensors share a row."""
    rows: dict[tuple[str, str], list[str]] = {}
    for path in sorted(Path(models_dir).glob("*/model-settings.json")):
        settings = json.loads(path.read_text())
        key = tuple("<br>".join(_tensor(t) for t in settings.get(kind) or []) for kind in ("inputs", "outputs"))
        rows.setdefault(key, []).append(f"`{settings['name']}`")
    lines = ["| models | inputs | outputs |", "|---|---|---|"]
    lines += [f"| {', '.join(names)} | {inputs} | {outputs} |" for (inputs, outputs), names in rows.items()]
    return "\n".join(lines)


def _tensor(tensor: dict) -> str:
    parameters = (tensor.get("parameters") or {}).items()
    hints = ", ".join(k if isinstance(v, bool) else f"{k}: {v}" for k, v in parameters)
    return f"`{tensor['name']}` {tensor['datatype']} {tensor['shape']}" + (f" ({hints})" if hints else "")


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
        "settings-outcomes": lambda: markdown_table(OutcomesSettings),
        "rollout-fields": rollout_fields,
        "rollout-calibration": lambda: rollout_calibration.render_markdown(
            _json(docs_dir / "rollout-calibration.json")),
        "drift-evidence": lambda: drift_report.render_markdown(_json(docs_dir / "drift-evidence.json")),
        "drift-serving": lambda: drift_serving.render_markdown(_json(docs_dir / "drift-serving.json")),
        # docs/demo.md shows the sample where it lives in the repository, whichever docs_dir was read
        "demo-report": lambda: report.readme_sample(_json(docs_dir / "demo-report" / "report.json"),
                                                       "docs/demo-report", "demo-report"),
        "stale-features": lambda: stale_features.render_markdown(_json(docs_dir / "stale-features.json")),
        "ab-calibration": lambda: ab_calibration.render_markdown(_json(docs_dir / "ab-calibration.json")),
        "gateway-serving": lambda: gateway_serving.render_markdown(_json(docs_dir / "gateway-serving.json")),
        "router-evidence": lambda: render_markdown(load_results(docs_dir / "router-evidence.json")),
        "benchmarks": lambda: benchmark.render_markdown(_json(docs_dir / "benchmarks.json")),
        "serving-profile": lambda: serving_profile.render_markdown(_json(docs_dir / "serving-profile.json")),
        "fuzz": lambda: fuzz.render_markdown(_json(docs_dir / "fuzz.json")),
        "model-metadata": lambda: metadata_table(models_dir),
        "rest-binary": lambda: benchmark.render_rows(_json(docs_dir / "benchmarks.json"),
                                                     ("rest_binary_vs_json", "rest_binary_vs_grpc")),
        "write-path": lambda: benchmark.render_rows(_json(docs_dir / "benchmarks.json"),
                                                    ("feedback_vs_echo", "outcomes_vs_echo", "scraped_vs_not")),
    }


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section_text(readme: str, name: str) -> str:
    """What the README holds between a section's markers (without the surrounding newlines)."""
    start, end = markers(name)
    if start not in readme or end not in readme:
        raise ValueError(f"the README has no {start} ... {end} section")
    return readme[readme.index(start) + len(start):readme.index(end)].strip("\n")


def present(text: str, names) -> list[str]:
    """The sections whose markers ``text`` holds."""
    return [name for name in names if all(marker in text for marker in markers(name))]


def render(text: str, models_dir: Path = Path("models"), docs_dir: Path = Path("docs")) -> str:
    """``text`` with each generated section it holds rendered anew."""
    made = sections(models_dir, docs_dir)
    for name in present(text, made):
        start, end = markers(name)
        head, rest = text.split(start, 1)
        text = head + start + "\n" + made[name]() + "\n" + end + rest.split(end, 1)[1]
    return text


def stale_sections(text: str, models_dir: Path = Path("models"), docs_dir: Path = Path("docs")) -> list[str]:
    made = sections(models_dir, docs_dir)
    return [name for name in present(text, made) if section_text(text, name) != made[name]()]


def documents(readme: Path, docs_dir: Path) -> list[Path]:
    """Where generated sections may live: the README and the pages of ``docs/``."""
    return [readme, *sorted(Path(docs_dir).glob("*.md"))]


def placement_problems(texts: dict[Path, str], names) -> list[str]:
    """Each section must live in exactly one document."""
    problems = []
    for name in names:
        places = [str(path) for path, text in texts.items() if name in present(text, [name])]
        if len(places) != 1:
            problems.append(f"section '{name}' is in {', '.join(places) or 'no document'}; it belongs in exactly one")
    return problems
