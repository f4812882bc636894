"""The report as Markdown (``report.md``) and as a page (``report.html``), both from the templates in
``templates/``: ``report.j2`` writes the report's content once, in marks (headings, paragraphs, lists, tables, code,
bold) that ``marks.md.j2`` and ``marks.html.j2`` define for each; the filters below format its numbers.
"""

from __future__ import annotations

import math
import numbers
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..live_metrics import during

TEMPLATES = Path(__file__).with_name("templates")


def render_markdown(report: dict) -> str:
    return MARKDOWN.get_template("report.md.j2").render(report=report)


def render_html(report: dict, plots: dict[str, Path]) -> str:
    """The report's page with its plots (``caption -> path``, in the folder the page is written to)."""
    return HTML.get_template("report.html.j2").render(report=report,
                                                      plots=[(caption, path.name) for caption, path in plots.items()])


def readme_sample(report: dict, folder: str, link: str | None = None) -> str:
    """The docs' sample of a stored run: the command, the decisions with their first reason, and the plots.
    ``folder`` is the run's folder in the repository; ``link`` the same folder as the page that shows it links it."""
    return MARKDOWN.get_template("readme_sample.md.j2").render(
        report=report, folder=folder, link=link or folder, reports_dir=Path(folder).parent,
        run_name=Path(folder).name).rstrip("\n")


# the templates' filters --------------------------------------------------------------------------------------------

def fmt(value, spec: str) -> str:
    """A number in a format spec (``"+.1%"``, ``",.0f"``); "-" for a missing one (None or NaN)."""
    return format(value, spec) if _present(value) else "-"


def pct(value) -> str:
    return fmt(value, ".1%")


def bp(value) -> str:
    """A return in basis points."""
    return fmt(1e4 * value, ".1f") if _present(value) else "-"


def ci(pair, spec: str = ".1%") -> str:
    """An interval, ``[low, high]``; "-" when either end is missing."""
    return f"[{format(pair[0], spec)}, {format(pair[1], spec)}]" if all(map(_present, pair)) else "-"


def shares(by_name: dict[str, float]) -> str:
    return " / ".join(f"{name} {share:.1%}" for name, share in by_name.items())


def clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S")


def _present(value) -> bool:
    return isinstance(value, numbers.Real) and not math.isnan(value)


def _environment(autoescape: bool) -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=autoescape, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              extensions=["jinja2.ext.do"])
    environment.filters.update(fmt=fmt, pct=pct, bp=bp, ci=ci, shares=shares, clock=clock, during=during)
    return environment


# Jinja decides escaping per environment, not per call: one escapes everything for the page (the marks' tags come as
# markup), the other nothing, for Markdown. The same templates, the same filters.
MARKDOWN, HTML = _environment(autoescape=False), _environment(autoescape=True)
