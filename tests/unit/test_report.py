"""The report of a run (analysis/report/): logs joined and analysed, the Markdown and the page
rendered from one template, the plots, and the stored sample in docs/."""

import copy
import inspect
import json
from html.parser import HTMLParser

import pytest

from seldon_market_ab.analysis.report import ExperimentRun, analyse, render_html, render_markdown
from seldon_market_ab.analysis.report.plots import (
    accuracy,
    business_impact,
    drift,
    latency,
    plots_of,
    posterior_regret,
    regimes,
    traffic_share,
)
from seldon_market_ab.cli.demo import run_demo

from ..conftest import REPO

SAMPLE = REPO / "docs" / "demo-report"
DASHBOARD = "the dashboard's panels"  # the plot cli/demo.py draws and adds to the report's own


def _sample() -> dict:
    return json.loads((SAMPLE / "report.json").read_text())


def test_a_log_is_joined_and_counted(tmp_path):
    log = tmp_path / "log.jsonl"
    entries = []
    for t in range(200):
        arm = "baseline" if t % 2 else "candidate"
        failed = arm == "candidate" and t % 10 == 0
        entry = {"kind": "request", "t": t, "request_id": f"r{t}", "arm": arm, "latency_ms": 5.0 + (t % 7),
                 "regime": "bull" if t % 3 else "bear", "strategy_return": 0.001 * ((t % 5) - 2)}
        entries.append({**entry, "error": "INTERNAL: injected"} if failed else {**entry, "correct": t % 4 != 0})
        if not failed:
            entries.append({"kind": "feedback", "request_id": f"r{t}", "reward": 1.0, "status": "applied"})
    log.write_text("\n".join(json.dumps(e) for e in entries))
    report = analyse(ExperimentRun("x", "ab", "x.experiment", "baseline", {"baseline": 1, "candidate": 1}, log))
    assert report["counts"] == {"sent": 200, "answered": 180, "failed": 20, "feedback_sent": 180,
                                "feedback_applied": 180}
    assert report["arms"]["candidate"]["n"] == 100 and report["arms"]["candidate"]["error_rate"] == 0.2
    assert sum(c["n"] for cells in report["regimes"].values() for c in cells.values()) == 200
    assert report["recommendation"]["decision"] == "roll_back"  # 20% failures against none


def test_the_stored_sample_is_a_run_of_the_defaults_with_every_plot():
    report = json.loads((SAMPLE / "report.json").read_text())
    defaults = inspect.signature(run_demo).parameters
    assert report["scenarios"] == defaults["scenarios"].default and report["workers"] == defaults["workers"].default
    assert [e["kind"] for e in report["experiments"]] == ["aa", "ab", "ab", "ab", "rollout", "faulty", "rollout",
                                                          "rollout"]
    for experiment in report["experiments"]:
        assert experiment["counts"]["sent"] == 2 * report["scenarios"]
    html = (SAMPLE / "report.html").read_text()
    for png in ("traffic-share", "accuracy", "latency", "posterior-regret", "regimes", "drift", "business-impact",
                "dashboard", "faulty-rollout", "enhanced-rollout", "retrain-rollout", "retrain-rollout-timeline"):
        assert (SAMPLE / f"{png}.png").stat().st_size > 10_000 and f'src="{png}.png"' in html
    # the live numbers: each arm's outcomes agree across the log, the store and Prometheus; the faulty alerts fired
    assert all(e["live"]["store_equals_log"] and e["live"]["prometheus_equals_store"] for e in report["experiments"])
    fired = {(a["alertname"], a["labels"].get("model")) for a in report["prometheus"]["alerts"]}
    assert {("MarketAbErrorRate", "faulty"), ("MarketAbLatencyHigh", "faulty")} <= fired
    # a drift alert became a new version, and its rollout decided
    retraining = report["experiments"][4]["retraining"]
    assert retraining["version"] == 2 and retraining["result"] in ("promoted", "kept_baseline", "rolled_back")
    # the autopilot rolled the faulty candidate back, its exposure counted
    rollout = report["experiments"][-2]["rollout"]
    assert rollout["phase"] == "rolled_back" and rollout["candidate_requests"] == \
        report["experiments"][-2]["arms"]["faulty"]["n"]


def test_the_stored_markdown_and_page_are_renderings_of_the_stored_report_json():
    """When the templates change, the sample is re-rendered from its report.json (render_markdown, render_html)."""
    report = _sample()
    plots = {**{plot.caption: SAMPLE / plot.file for plot in plots_of(report)}, DASHBOARD: SAMPLE / "dashboard.png"}
    assert render_markdown(report) == (SAMPLE / "report.md").read_text()
    assert render_html(report, plots) == (SAMPLE / "report.html").read_text()


class _PageBlocks(HTMLParser):
    """The page's blocks as the Markdown has them: the text of each heading, paragraph and list item, and the cells of
    each table row (headers included)."""

    TEXTS, CELLS = ("h1", "h2", "h3", "p", "li"), ("th", "td")

    def __init__(self, page: str):
        super().__init__()
        self.blocks, self.row, self.text = [], None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag in self.TEXTS + self.CELLS:
            self.text = ""
        elif tag == "tr":
            self.row = []

    def handle_endtag(self, tag):
        if tag in self.TEXTS:
            self.blocks.append([self.text])
        elif tag in self.CELLS:
            self.row.append(self.text)
        elif tag == "tr":
            self.blocks.append(self.row)

    def handle_data(self, data):
        if self.text is not None:
            self.text += data


def _markdown_blocks(markdown: str) -> list[list[str]]:
    """Each line's text without its marks (heading, item, code, bold, emphasis), a table row as its cells."""
    blocks = []
    for line in markdown.splitlines():
        if line and not line.startswith("|---"):
            cells = line.strip("|").split("|") if line.startswith("|") else [line.lstrip("#- ")]
            blocks.append([cell.strip().replace("**", "").replace("`", "").replace("*", "") for cell in cells])
    return blocks


def test_the_markdown_and_the_page_show_the_same_blocks_of_one_report():
    report = _sample()
    page = _PageBlocks(render_html(report, {})).blocks
    assert page[-1] == ["Plots"]  # the page's own section; then the figures, none here
    markdown = _markdown_blocks(render_markdown(report))
    assert page[:-1] == markdown
    tables = [block for block in markdown if len(block) > 1]
    assert len(tables) > 100 and ["arm", "n", "accuracy [95% CI]", "mean return (bp)", "Sharpe [95% CI]",
                                  "max drawdown", "p50 / p95 / p99 ms", "error rate"] in tables


def test_the_page_escapes_the_report_and_the_markdown_leaves_it_as_it_is():
    report = copy.deepcopy(_sample())
    report["experiments"][0]["name"] = "<img src=x onerror=alert(1)>"
    assert "<img src=x" not in render_html(report, {}) and "&lt;img src=x onerror=alert(1)&gt;" in \
        render_html(report, {})
    assert "## <img src=x onerror=alert(1)> (aa): **continue**" in render_markdown(report)


@pytest.mark.parametrize("figure_of", [traffic_share, accuracy, latency, posterior_regret, regimes, drift,
                                       business_impact], ids=lambda f: f.__name__)
def test_every_plot_draws_the_report_data_on_each_of_its_panels(figure_of):
    figure = figure_of(_sample())
    assert figure.axes and all(axis.has_data() for axis in figure.axes)
