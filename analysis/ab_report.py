"""The report of a demo run: the request logs of each experiment (``loadtest/locustfile.py``) joined with their
feedback and, for a bandit, the propensities its router logged, analysed by ``seldon_market_ab.analysis.ab_analysis``
and written as ``report.json`` (for tools and pipelines), ``report.md``, ``report.html`` and PNG plots.
"""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from . import retrain_report, rollout_report
from .ab_analysis import (
    ArmLog,
    BusinessModel,
    DecisionPolicy,
    business_impact,
    off_policy,
    recommend,
    summarise_arm,
)
from .live_metrics import alerts_markdown, live_markdown


@dataclass(frozen=True)
class ExperimentRun:
    name: str
    kind: str  # "aa", "ab" or "faulty"
    target: str  # the seldon-model header the traffic used
    baseline: str
    weights: dict[str, float] | None  # configured split (experiments); None for a bandit or a router
    log: Path  # JSON lines from the locustfile
    router: str | None = None


def log_entries(path: Path) -> list[dict]:
    """Every line of a Locust log (requests, feedback, outcomes)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_log(path: Path) -> tuple[list[dict], dict[str, dict]]:
    entries = log_entries(path)
    requests = sorted((e for e in entries if e["kind"] == "request"), key=lambda e: e["t"])
    feedback = {e["request_id"]: e for e in entries if e["kind"] == "feedback"}
    return requests, feedback


def arm_logs(requests: list[dict], propensities: dict[str, float] | None = None) -> dict[str, ArmLog]:
    """One ``ArmLog`` per arm, requests in arrival order; a failed request counts against the arm that failed."""
    by_arm: dict[str, list[dict]] = {}
    for entry in requests:
        by_arm.setdefault(entry.get("arm") or "unknown", []).append(entry)
    logs = {}
    for arm, entries in sorted(by_arm.items()):
        error = np.array(["error" in e for e in entries])
        logs[arm] = ArmLog(
            arm, np.array([e["t"] for e in entries]), np.array([bool(e.get("correct")) for e in entries]),
            np.array([e.get("strategy_return", 0.0) for e in entries], float),
            np.array([e["latency_ms"] for e in entries], float), error,
            np.array([propensities.get(e["request_id"], math.nan) for e in entries]) if propensities else None)
    return logs


def analyse(run: ExperimentRun, propensities: dict[str, float] | None = None,
            policy: DecisionPolicy = DecisionPolicy(), business: BusinessModel = BusinessModel()) -> dict:
    requests, feedback = read_log(run.log)
    logs = arm_logs(requests, propensities)
    baseline = logs.get(run.baseline)
    candidates = [log for name, log in logs.items() if name != run.baseline]
    summaries = {name: summarise_arm(log) for name, log in logs.items()}
    answered = [r for r in requests if "error" not in r]
    report = {
        "name": run.name, "kind": run.kind, "target": run.target, "baseline": run.baseline,
        "configured_split": run.weights,
        "counts": {"sent": len(requests), "answered": len(answered), "failed": len(requests) - len(answered),
                   "feedback_sent": len(feedback),
                   "feedback_applied": sum(1 for f in feedback.values() if f["status"] == "applied")},
        "arms": summaries,
    }
    if baseline is None or not candidates:
        report["recommendation"] = {"decision": "continue",
                                    "reasons": [f"the baseline {run.baseline} and a candidate must both be served; "
                                                f"arms seen: {', '.join(logs) or 'none'}"]}
        return report
    recommendation, figures = recommend(baseline, candidates, run.weights, policy)
    report["comparisons"] = figures["comparisons"]
    report["srm"] = figures["srm"]
    report["business_impact"] = {name: business_impact(summaries[run.baseline], summaries[name],
                                                       figures["comparisons"][name], business)
                                 for name in figures["comparisons"]}
    if propensities and all(not np.isnan(log.propensity).any() for log in logs.values()):
        report["off_policy"] = off_policy(list(logs.values()))
    report["recommendation"] = {"decision": recommendation.decision, "reasons": recommendation.reasons}
    report["timeline"] = timeline(requests)
    report["regimes"] = per_regime(requests)
    return report


def timeline(requests: list[dict], buckets: int = 20) -> dict:
    """Over the run, in ``buckets`` slices of arrival order: each arm's traffic share; each arm's accuracy so far as a
    Beta(1, 1) posterior (mean and 95% interval); and the cumulative (pseudo-)regret of the routing: for every request,
    the accuracy of the arm that proved best over the whole run less that of the arm that served it (both estimated
    from the whole run), summed. Day-to-day luck, which every arm shares, cancels out of it."""
    arms = sorted({r.get("arm") or "unknown" for r in requests})
    arm_of = np.array([r.get("arm") or "unknown" for r in requests])
    correct = np.array([bool(r.get("correct")) for r in requests], float)
    edges = np.linspace(0, len(requests), buckets + 1).astype(int)[1:]
    share = {arm: [] for arm in arms}
    posterior = {arm: [] for arm in arms}
    accuracy = {arm: float(correct[arm_of == arm].mean()) for arm in arms}
    best = max(accuracy.values(), default=0.0)
    regret = np.cumsum([best - accuracy[arm] for arm in arm_of])
    start = 0
    for end in edges:
        part = arm_of[start:end]
        for arm in arms:
            share[arm].append(float((part == arm).mean()) if len(part) else 0.0)
            k, n = correct[:end][arm_of[:end] == arm].sum(), (arm_of[:end] == arm).sum()
            low, high = stats.beta.ppf([0.025, 0.975], 1 + k, 1 + n - k)
            posterior[arm].append([float((1 + k) / (2 + n)), float(low), float(high)])
        start = end
    return {"buckets": buckets, "requests": edges.tolist(), "share": share, "posterior": posterior,
            "cumulative_regret": [float(regret[end - 1]) if end else 0.0 for end in edges],
            "regret_reference_accuracy": float(best)}


def per_regime(requests: list[dict]) -> dict:
    """Per market regime of the day: how many requests each arm served, and how often it was right."""
    out: dict = {}
    for r in requests:
        cell = out.setdefault(r.get("regime", "unknown"), {}).setdefault(r.get("arm") or "unknown",
                                                                          {"n": 0, "correct": 0})
        cell["n"] += 1
        cell["correct"] += int(bool(r.get("correct")))
    return {regime: {arm: {**c, "accuracy": c["correct"] / c["n"]} for arm, c in sorted(arms.items())}
            for regime, arms in sorted(out.items())}


# writing ---------------------------------------------------------------------------------------------------

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


def _pct(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _ci(pair, fmt="{:.1%}") -> str:
    return "-" if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in pair) else \
        f"[{fmt.format(pair[0])}, {fmt.format(pair[1])}]"


def experiment_markdown(experiment: dict) -> list[str]:
    counts = experiment["counts"]
    lines = [f"## {experiment['name']} ({experiment['kind']}): **{experiment['recommendation']['decision']}**", ""]
    lines += [f"- {reason}" for reason in experiment["recommendation"]["reasons"]]
    if experiment.get("retraining"):
        lines += retrain_report.markdown(experiment["retraining"])
    if experiment.get("rollout"):
        lines += rollout_report.markdown(experiment["rollout"])
    lines += ["", f"Target `{experiment['target']}`; {counts['sent']:,} requests sent, {counts['answered']:,} "
                  f"answered, {counts['failed']:,} failed; {counts['feedback_applied']:,} of "
                  f"{counts['feedback_sent']:,} rewards applied by the router.", ""]
    lines += ["| arm | n | accuracy [95% CI] | mean return (bp) | Sharpe [95% CI] | max drawdown | p50 / p95 / p99 ms "
              "| error rate |", "|---|---|---|---|---|---|---|---|"]
    for name, arm in experiment["arms"].items():
        latency = arm["latency_ms"]
        sharpe = arm["sharpe"]
        lines.append(f"| {name}{' (baseline)' if name == experiment['baseline'] else ''} | {arm['n']:,} | "
                     f"{_pct(arm['accuracy'])} {_ci(arm['accuracy_ci'])} | {1e4 * arm['mean_return']:.1f} | "
                     f"{'-' if math.isnan(sharpe) else f'{sharpe:.2f}'} {_ci(arm['sharpe_ci'], '{:.2f}')} | "
                     f"{arm['max_drawdown']:.3f} | {latency['p50']:.1f} / {latency['p95']:.1f} / "
                     f"{latency['p99']:.1f} | {_pct(arm['error_rate'])} |")
    if experiment.get("comparisons"):
        lines += ["", "| candidate vs baseline | accuracy difference [95% CI] | P(beats baseline) | always-valid p | "
                      "latency guardrail | error guardrail | impact over trades [95% CI] |",
                  "|---|---|---|---|---|---|---|"]
        for name, c in experiment["comparisons"].items():
            impact = experiment["business_impact"][name]
            lines.append(f"| {name} | {c['accuracy_difference']:+.1%} {_ci(c['accuracy_difference_ci'])} | "
                         f"{c['probability_to_beat']:.2f} | {c['always_valid_p']:.3g} | "
                         f"{'breached' if c['latency_guardrail']['breached'] else 'ok'} | "
                         f"{'breached' if c['error_guardrail']['breached'] else 'ok'} | "
                         f"{impact['total']:+,.0f} {_ci(impact['total_ci'], '{:+,.0f}')} |")
    if experiment.get("srm"):
        srm = experiment["srm"]
        lines += ["", f"Sample ratio: observed {_shares(srm['observed_share'])}, configured "
                      f"{_shares(srm['expected_share'])}: chi-square p = {srm['p_value']:.3g} "
                      f"({'a mismatch' if srm['mismatch'] else 'consistent'}; a mismatch below {srm['threshold']:g})."]
    if experiment.get("regimes"):
        arms = list(experiment["arms"])
        lines += ["", "| regime of the day | " + " | ".join(f"{arm}: n (accuracy)" for arm in arms) + " |",
                  "|---|" + "---|" * len(arms)]
        for regime, cells in experiment["regimes"].items():
            lines.append(f"| {regime} | " + " | ".join(
                f"{cells[arm]['n']} ({cells[arm]['accuracy']:.0%})" if arm in cells else "0" for arm in arms) + " |")
    if experiment.get("off_policy"):
        lines += ["", "| arm (always chosen) | traffic that supports it | IPS [95% CI] | SNIPS | DR [95% CI] "
                      "| chosen |", "|---|---|---|---|---|---|"]
        for name, e in experiment["off_policy"].items():
            dr = f"{e['dr']['value']:.3f} {_ci(e['dr']['ci'], '{:.3f}')}"
            if e["identifiable"]:
                ips = f"{e['ips']['value']:.3f} {_ci(e['ips']['ci'], '{:.3f}')}"
                snips = "-" if e["snips"] is None else f"{e['snips']:.3f}"
            else:  # the router never gave it a chance on the rest: no estimate, only a model's extrapolation
                ips = snips = "not identifiable"
                dr = f"{dr}, reward model alone on {_pct(e['dr_model_share'])} of requests"
            lines.append(f"| {name} | {_pct(e['support'])} | {ips} | {snips} | {dr} | {e['chosen']:,} |")
        if any(not e["identifiable"] for e in experiment["off_policy"].values()):
            lines += ["", "An arm is not identifiable when the router sent some requests elsewhere with certainty "
                          "(propensity 1): nothing logged says what it would have answered there."]
    if experiment.get("live"):
        lines += live_markdown(experiment["live"])
    return lines


def _shares(shares: dict[str, float]) -> str:
    return " / ".join(f"{name} {share:.1%}" for name, share in shares.items())


def readme_sample(report: dict, folder: str, link: str | None = None) -> str:
    """The docs' sample of a stored run: the command, the decisions with their first reason, and the plots.
    ``folder`` is the run's folder in the repository; ``link`` the same folder as the page that shows it links it."""
    link = link or folder
    lines = [f"Generated by `market-ab demo --reports-dir {Path(folder).parent} --run-name {Path(folder).name} "
             f"--no-logs` ({report['settings']}); the whole report is [{folder}/report.md]({link}/report.md).", "",
             "| experiment | kind | sent | failed | rewards applied | recommendation | first reason |",
             "|---|---|---|---|---|---|---|"]
    for e in report["experiments"]:
        counts = e["counts"]
        lines.append(f"| {e['name']} | {e['kind']} | {counts['sent']:,} | {counts['failed']:,} | "
                     f"{counts['feedback_applied']:,} | **{e['recommendation']['decision']}** | "
                     f"{e['recommendation']['reasons'][0]} |")
    rollouts = [e for e in report["experiments"] if e.get("rollout")]
    if rollouts:
        lines += ["", "| rollout by `market-ab rollout` | phase | requests to the candidate | reason |",
                  "|---|---|---|---|"]
        lines += [f"| {e['name']} ({e['rollout']['candidate']}) | **{e['rollout']['phase']}** | "
                  f"{e['rollout']['candidate_requests']} | {e['rollout']['reasons'][0]} |" for e in rollouts]
    for e in (e for e in report["experiments"] if e.get("retraining")):
        retraining = e["retraining"]
        lines += ["", f"Retraining ({retraining['what']}): version {retraining['version']} of "
                      f"{e['target']}, **{retraining['result']}**."]
    drifted = sum(d["is_drift"] for d in report.get("drift", []))
    lines += ["", f"Drift: {drifted} of {len(report.get('drift', []))} windows of 60 days judged drifted.", ""]
    for name, file in (("traffic share over time per arm", "traffic-share.png"),
                       ("accuracy posteriors and routing regret", "posterior-regret.png"),
                       ("routing and accuracy per regime", "regimes.png"), ("accuracy per arm", "accuracy.png"),
                       ("latency percentiles per arm", "latency.png"), ("business impact", "business-impact.png"),
                       ("drift verdicts", "drift.png"),
                       *((("the dashboard's panels", "dashboard.png"),) if report.get("prometheus") else ()),
                       *((f"{e['name']}: from the drift alert to the decision", f"{e['name']}-timeline.png")
                         for e in rollouts if e.get("retraining")),
                       *((f"{e['name']}: weight and gates over the rollout", f"{e['name']}.png") for e in rollouts)):
        lines.append(f"![{name}]({link}/{file})")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    business = report["business_model"]
    lines = [f"# A/B report {report['run']}", "",
             f"Generated by `market-ab demo` ({report['settings']}). Business model: {business['trades']:,} trades of "
             f"{business['notional']:,.0f} notional, {business['cost_per_ms']:g} per trade per millisecond of latency.",
             ""]
    lines += ["| experiment | kind | recommendation |", "|---|---|---|"]
    lines += [f"| {e['name']} | {e['kind']} | {e['recommendation']['decision']} |" for e in report["experiments"]]
    for experiment in report["experiments"]:
        lines += ["", *experiment_markdown(experiment)]
    if report.get("drift"):
        drifted = [d for d in report["drift"] if d["is_drift"]]
        lines += ["", "## Drift over the replayed period", "",
                  f"The drift detector judged {len(report['drift'])} windows of 60 consecutive days (one instrument "
                  f"each, every 20 days): {len(drifted)} drifted."
                  + (" Drifted: " + "; ".join(f"{d['instrument']} {d['first_date']} to {d['last_date']}"
                                              for d in drifted) + "." if drifted else "")]
    if report.get("prometheus"):
        lines += ["", *alerts_markdown(report["prometheus"])]
    return "\n".join(lines) + "\n"


def render_html(report: dict, plots: dict[str, Path]) -> str:
    """The markdown's content as a page with the plots (no external assets: it opens from its folder)."""
    parts, table = [], []
    for line in render_markdown(report).splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                tag = "th" if not table else "td"
                cells = [_inline(cell.strip()) for cell in line.strip("|").split("|")]
                table.append("<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>")
            continue
        if table:
            parts.append("<table>" + "".join(table) + "</table>")
            table = []
        parts.append(_line_html(line))
    images = "\n".join(f'<figure><img src="{path.name}" alt="{html.escape(name)}"><figcaption>'
                       f"{html.escape(name)}</figcaption></figure>" for name, path in plots.items())
    # once the page has loaded, it says how many of its plots did (what `look_at` reads in headless Chromium)
    script = ("<script>window.addEventListener('load', () => { const images = [...document.images]; "
              "document.body.setAttribute('data-images-loaded', images.filter(i => i.complete && i.naturalWidth > 0)"
              ".length + '/' + images.length); });</script>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>A/B report {html.escape(report['run'])}"
            "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:"
            "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style>"
            f"{script}</head><body>{''.join(parts)}<h2>Plots</h2>{images}</body></html>\n")


def look_at(report_html: Path, screenshot: Path | None = None, browser: str = "chromium") -> dict:
    """Open the report in headless Chromium as a person would: how many of its plots loaded, and a screenshot of the
    page (``screenshot``, default ``report-screenshot.png`` beside it)."""
    report_html = Path(report_html).resolve()
    screenshot = screenshot or report_html.with_name("report-screenshot.png")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", report_html.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={screenshot}", report_html.as_uri()],
                   capture_output=True, timeout=120)
    return {"images_loaded": int(found[1]) if found else 0, "images": int(found[2]) if found else -1,
            "screenshot": str(screenshot) if screenshot.exists() else None}


def _line_html(line: str) -> str:
    if line.startswith("# "):
        return f"<h1>{_inline(line[2:])}</h1>"
    if line.startswith("## "):
        return f"<h2>{_inline(line[3:])}</h2>"
    if line.startswith("- "):
        return f"<p>&bull; {_inline(line[2:])}</p>"
    return f"<p>{_inline(line)}</p>" if line else ""


def _inline(text: str) -> str:
    """Markdown's `code` and **bold**, the only inline marks the report uses."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def draw(report: dict, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiments = report["experiments"]
    plots = {}
    figure, axes = plt.subplots(1, len(experiments), figsize=(3.2 * len(experiments), 3.2), squeeze=False)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        share = (experiment.get("timeline") or {}).get("share", {})
        for arm, values in share.items():
            axis.plot(np.arange(1, len(values) + 1), 100 * np.array(values), label=arm)
        axis.set_title(experiment["name"], fontsize=9)
        axis.set_xlabel("twentieths of the run", fontsize=8)
        axis.set_ylim(-2, 102)
        axis.legend(fontsize=6)
    axes[0][0].set_ylabel("traffic share (%)")
    plots["traffic share over time per arm"] = _save(figure, folder / "traffic-share.png", plt)

    figure, axes = plt.subplots(1, len(experiments), figsize=(3.2 * len(experiments), 3.2), squeeze=False)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        names = list(experiment["arms"])
        accuracy = np.array([experiment["arms"][n]["accuracy"] for n in names])
        ci = np.array([experiment["arms"][n]["accuracy_ci"] for n in names])
        axis.errorbar(range(len(names)), 100 * accuracy, yerr=100 * np.abs(ci.T - accuracy), fmt="o", capsize=3)
        axis.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        axis.axhline(50, color="grey", linewidth=0.8, linestyle="--")
        axis.set_title(experiment["name"], fontsize=9)
    axes[0][0].set_ylabel("accuracy (%), 95% CI")
    plots["accuracy per arm with intervals"] = _save(figure, folder / "accuracy.png", plt)
    for experiment in experiments:
        if experiment.get("retraining"):
            plots[f"{experiment['name']}: from the drift alert to the rollout's decision"] = \
                retrain_report.draw(experiment["retraining"], folder / f"{experiment['name']}-timeline.png")
        if experiment.get("rollout"):
            plots[f"{experiment['name']}: the candidate's weight and the gates' figures over the rollout"] = \
                rollout_report.draw(experiment["name"], experiment["rollout"], folder / f"{experiment['name']}.png")

    figure, axes = plt.subplots(1, len(experiments), figsize=(3.2 * len(experiments), 3.2), squeeze=False)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        names = list(experiment["arms"])
        for i, q in enumerate(("p50", "p95", "p99")):
            axis.bar(np.arange(len(names)) + (i - 1) * 0.27, [experiment["arms"][n]["latency_ms"][q] for n in names],
                     width=0.27, label=q)
        axis.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        axis.set_title(experiment["name"], fontsize=9)
        axis.legend(fontsize=6)
    axes[0][0].set_ylabel("latency (ms)")
    plots["latency percentiles per arm"] = _save(figure, folder / "latency.png", plt)

    figure, axes = plt.subplots(2, len(experiments), figsize=(3.2 * len(experiments), 5.6), squeeze=False)
    for column, experiment in enumerate(experiments):
        line = experiment.get("timeline") or {}
        for arm, points in (line.get("posterior") or {}).items():
            points = np.array(points)
            axes[0][column].plot(line["requests"], 100 * points[:, 0], label=arm)
            axes[0][column].fill_between(line["requests"], 100 * points[:, 1], 100 * points[:, 2], alpha=0.15)
        axes[0][column].set_title(experiment["name"], fontsize=9)
        axes[0][column].legend(fontsize=6)
        if line.get("cumulative_regret"):
            axes[1][column].plot(line["requests"], line["cumulative_regret"])
        axes[1][column].set_xlabel("requests", fontsize=8)
    axes[0][0].set_ylabel("accuracy posterior (%), 95%")
    axes[1][0].set_ylabel("cumulative regret, in correct\nanswers (vs the run's best arm)")
    plots["posterior accuracy per arm and cumulative regret"] = _save(figure, folder / "posterior-regret.png", plt)

    routed = [e for e in experiments if e.get("regimes") and len(e["arms"]) > 2]  # the router pipelines
    if routed:
        figure, axes = plt.subplots(1, len(routed), figsize=(4.6 * len(routed), 3.4), squeeze=False)
        for axis, experiment in zip(axes[0], routed, strict=True):
            regimes, arms = list(experiment["regimes"]), list(experiment["arms"])
            bottom = np.zeros(len(regimes))
            for arm in arms:
                counts = np.array([experiment["regimes"][g].get(arm, {}).get("n", 0) for g in regimes], float)
                totals = np.array([sum(c["n"] for c in experiment["regimes"][g].values()) for g in regimes], float)
                axis.bar(range(len(regimes)), 100 * counts / totals, bottom=bottom, label=arm)
                bottom += 100 * counts / totals
            accuracy = [100 * sum(c["correct"] for c in experiment["regimes"][g].values())
                        / sum(c["n"] for c in experiment["regimes"][g].values()) for g in regimes]
            axis.plot(range(len(regimes)), accuracy, "ko--", label="accuracy")
            axis.set_xticks(range(len(regimes)), regimes, fontsize=7)
            axis.set_title(f"{experiment['name']}: routing and accuracy per regime", fontsize=9)
            axis.legend(fontsize=6)
        axes[0][0].set_ylabel("share of requests / accuracy (%)")
        plots["routing and accuracy per regime"] = _save(figure, folder / "regimes.png", plt)

    if report.get("drift"):
        figure, axis = plt.subplots(figsize=(7, 2.4))
        instruments = sorted({d["instrument"] for d in report["drift"]})
        for d in report["drift"]:
            y = instruments.index(d["instrument"])
            start, end = np.datetime64(d["first_date"]), np.datetime64(d["last_date"])
            axis.plot([start, end], [y + (0.15 if d["is_drift"] else -0.15)] * 2, linewidth=4,
                      color="tab:red" if d["is_drift"] else "tab:green", alpha=0.7)
        axis.set_yticks(range(len(instruments)), instruments)
        axis.set_ylim(-0.6, len(instruments) - 0.4)
        axis.set_title("drift detector's verdict per 60-day window (red: drift, green: none)", fontsize=9)
        figure.autofmt_xdate()
        plots["drift verdicts over the run"] = _save(figure, folder / "drift.png", plt)

    figure, axis = plt.subplots(figsize=(7, 3.4))
    labels, totals, lows, highs = [], [], [], []
    for experiment in experiments:
        for name, impact in (experiment.get("business_impact") or {}).items():
            labels.append(f"{experiment['name']}: {name}")
            totals.append(impact["total"])
            lows.append(impact["total"] - impact["total_ci"][0])
            highs.append(impact["total_ci"][1] - impact["total"])
    if labels:
        axis.barh(range(len(labels)), totals, xerr=[lows, highs], capsize=3)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_xlabel(f"impact of switching over {report['business_model']['trades']:,} trades (95% CI)")
    plots["business impact"] = _save(figure, folder / "business-impact.png", plt)
    return plots


def _save(figure, path: Path, plt) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
