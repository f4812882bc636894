"""The report of a demo run: the request logs of each experiment (``loadtest/locustfile.py``) joined with their
feedback and, for a bandit, the propensities its router logged, analysed by ``seldon_market_ab.analysis.ab_analysis``
and written as ``report.json`` (for tools and pipelines), ``report.md``, ``report.html`` and PNG plots.

This module is what the demo calls; the work is in its parts, one concern each:

- ``joining``: a run's logs joined per experiment (``ExperimentRun``, ``read_log``);
- ``analysing``: each experiment's statistics and recommendation (``analyse``);
- ``rendering``: ``report.md`` and ``report.html`` from the templates in ``templates/``;
- ``plots``: one function per plot, and which plots a report has;
- ``browser``: the page looked at in headless Chromium (``look_at``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .analysing import analyse
from .browser import look_at
from .joining import ExperimentRun, log_entries, read_log
from .plots import draw
from .rendering import readme_sample, render_html, render_markdown

__all__ = ["ExperimentRun", "analyse", "log_entries", "look_at", "read_log", "readme_sample", "render_html",
           "render_markdown", "write_report"]


def write_report(folder: Path, report: dict, extra_plots: dict[str, Path] | None = None) -> dict[str, Path]:
    """``extra_plots``: drawn elsewhere into ``folder`` (the dashboard's panels), shown after the report's own."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    plots = {**draw(report, folder), **(extra_plots or {})}
    (folder / "report.md").write_text(render_markdown(report))
    (folder / "report.html").write_text(render_html(report, plots))
    return {"json": folder / "report.json", "md": folder / "report.md", "html": folder / "report.html", **plots}


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)
