"""How often the A/B analysis (``ab_analysis``) decides wrongly, and how often it finds what is there, by simulation
at the demo's run sizes.

Each simulated experiment splits ``requests`` requests between a baseline and a candidate by the configured
weights, in arrival order; a request is right with its arm's accuracy, earns the day's move in the direction it
predicted, takes a log-normal latency and fails with a small probability, all with a fixed seed. The analysis then
sees only what a real run would log, and recommends.

- A/A: both arms identical; any ``promote`` is a false positive (goal: at most 5%), any ``roll_back`` a false
  alarm of the guardrails.
- Power: the candidate more accurate by a known gap; how often ``promote`` comes out, per gap and run size.
- Faults: the candidate slower by a known number of milliseconds, or failing a known share of requests; how often
  ``roll_back`` comes out.

    python -m seldon_market_ab.analysis.ab_calibration   # about a minute; writes docs/ab-calibration.{json,md,png}
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.training.evaluation import wilson_interval

from .ab_analysis import ArmLog, DecisionPolicy, recommend

BASE_ACCURACY = 0.54  # about the shipped models' test accuracy (README, Evaluation)
MEAN_ABS_MOVE = 0.008  # mean absolute daily move of an index
LATENCY_MEDIAN_MS, LATENCY_SIGMA = 8.0, 0.35
ERROR_RATE = 0.002
WEIGHTS = {"baseline": 70, "candidate": 30}  # the ab-test experiment's split


@dataclass(frozen=True)
class Scenario:
    requests: int
    accuracy_gap: float = 0.0
    added_latency_ms: float = 0.0
    added_error_rate: float = 0.0


def simulate(scenario: Scenario, rng: np.random.Generator) -> tuple[ArmLog, ArmLog]:
    share = WEIGHTS["candidate"] / sum(WEIGHTS.values())
    is_candidate = rng.random(scenario.requests) < share
    accuracy = np.where(is_candidate, BASE_ACCURACY + scenario.accuracy_gap, BASE_ACCURACY)
    error = rng.random(scenario.requests) < np.where(is_candidate, ERROR_RATE + scenario.added_error_rate,
                                                     ERROR_RATE)
    correct = (rng.random(scenario.requests) < accuracy) & ~error
    move = rng.exponential(MEAN_ABS_MOVE, scenario.requests)
    returns = np.where(error, 0.0, np.where(correct, move, -move))
    latency = rng.lognormal(np.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA, scenario.requests) \
        + np.where(is_candidate, scenario.added_latency_ms, 0.0)
    t = np.arange(scenario.requests)
    logs = []
    for name, mask in (("baseline", ~is_candidate), ("candidate", is_candidate)):
        logs.append(ArmLog(name, t[mask], correct[mask], returns[mask], latency[mask], error[mask]))
    return logs[0], logs[1]


def decision_rates(scenario: Scenario, experiments: int, seed: int, policy: DecisionPolicy) -> dict:
    rng = np.random.default_rng(seed)
    counts = {"promote": 0, "keep_baseline": 0, "continue": 0, "roll_back": 0}
    for _ in range(experiments):
        baseline, candidate = simulate(scenario, rng)
        decision, _ = recommend(baseline, [candidate], WEIGHTS, policy)
        counts[decision.decision] += 1
    out = {"experiments": experiments, "counts": counts}
    for name, count in counts.items():
        low, high = wilson_interval(count, experiments)
        out[name] = {"rate": count / experiments, "ci": [low, high]}
    return out


def run(experiments: int, sizes: list[int], gaps: list[float], latencies: list[float], errors: list[float],
        demo_requests: int, seed: int = 0, progress: bool = True) -> dict:
    policy = DecisionPolicy()
    jobs = ([("aa", Scenario(size)) for size in sizes]
            + [("power", Scenario(size, accuracy_gap=gap)) for size in sizes for gap in gaps]
            + [("latency", Scenario(demo_requests, added_latency_ms=ms)) for ms in latencies]
            + [("errors", Scenario(demo_requests, added_error_rate=rate)) for rate in errors])
    started = time.perf_counter()
    results: dict = {"aa": [], "power": [], "latency": [], "errors": []}
    for i, (kind, scenario) in enumerate(tqdm(jobs, desc="simulated experiments", disable=not progress)):
        rates = decision_rates(scenario, experiments, seed + i, policy)
        results[kind].append({"requests": scenario.requests, "accuracy_gap": scenario.accuracy_gap,
                              "added_latency_ms": scenario.added_latency_ms,
                              "added_error_rate": scenario.added_error_rate, **rates})
    return {"experiments": experiments, "seed": seed, "demo_requests": demo_requests, "weights": WEIGHTS,
            "base_accuracy": BASE_ACCURACY, "latency_median_ms": LATENCY_MEDIAN_MS, "error_rate": ERROR_RATE,
            "policy": policy.__dict__, "seconds": time.perf_counter() - started, **results}


def _rate(entry: dict, name: str) -> str:
    rate = entry[name]
    return f"{rate['rate']:.1%} [{rate['ci'][0]:.1%}, {rate['ci'][1]:.1%}]"


def render_markdown(results: dict) -> str:
    weights = " / ".join(f"{name} {weight}" for name, weight in results["weights"].items())
    lines = [
        f"Generated by `python -m seldon_market_ab.analysis.ab_calibration` "
        f"({results['experiments']} simulated experiments per row, "
        f"seed {results['seed']}; split {weights}; baseline accuracy {results['base_accuracy']:.0%}, median latency "
        f"{results['latency_median_ms']:g} ms, error rate {results['error_rate']:.1%}; the analysis looks after every "
        f"request with its always-valid test at alpha {results['policy']['alpha']}). Rates with 95% intervals.",
        "",
        "| A/A (identical arms), requests | promote (goal ≤ 5%) | roll_back | keep_baseline |",
        "|---|---|---|---|",
    ]
    lines += [f"| {e['requests']:,} | {_rate(e, 'promote')} | {_rate(e, 'roll_back')} | {_rate(e, 'keep_baseline')} |"
              for e in results["aa"]]
    sizes = sorted({e["requests"] for e in results["power"]})
    gaps = sorted({e["accuracy_gap"] for e in results["power"]})
    lines += ["", "| accuracy gap | " + " | ".join(f"promote at {size:,} requests" for size in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for gap in gaps:
        row = {e["requests"]: e for e in results["power"] if e["accuracy_gap"] == gap}
        lines.append(f"| {gap:+.0%} | " + " | ".join(_rate(row[size], "promote") for size in sizes) + " |")
    lines += ["", f"| fault in the candidate, {results['demo_requests']:,} requests | roll_back |", "|---|---|"]
    lines += [f"| +{e['added_latency_ms']:g} ms latency | {_rate(e, 'roll_back')} |" for e in results["latency"]]
    lines += [f"| +{e['added_error_rate']:.0%} failed requests | {_rate(e, 'roll_back')} |" for e in results["errors"]]
    lines += ["", "In short: " + "; ".join(_smallest_found(results)) + "."]
    return "\n".join(lines)


def _smallest_found(results: dict, share: float = 0.8) -> list[str]:
    """The smallest gap or fault that the analysis acts on in at least ``share`` of the experiments."""
    out = []
    for size in sorted({e["requests"] for e in results["power"]}):
        found = [e["accuracy_gap"] for e in results["power"] if e["requests"] == size and e["promote"]["rate"] >= share]
        out.append(f"at {size:,} requests, a gap of {min(found):+.0%} is promoted in {share:.0%} of experiments or more"
                   if found else f"at {size:,} requests, no gap simulated is promoted in {share:.0%} of experiments")
    for kind, key, unit in (("latency", "added_latency_ms", " ms"), ("errors", "added_error_rate", "")):
        found = [e[key] for e in results[kind] if e["roll_back"]["rate"] >= share]
        shown = (f"+{min(found):g}{unit} of latency" if kind == "latency" else f"+{min(found):.0%} failed requests") \
            if found else None
        out.append(f"{shown} rolls back at {results['demo_requests']:,} requests in {share:.0%} of experiments or more"
                   if shown else f"no simulated {kind} fault rolls back in {share:.0%} of experiments")
    return out


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for size in sorted({e["requests"] for e in results["power"]}):
        row = sorted((e for e in results["power"] if e["requests"] == size), key=lambda e: e["accuracy_gap"])
        gaps = [100 * e["accuracy_gap"] for e in row]
        rates = np.array([e["promote"]["rate"] for e in row])
        low = rates - np.array([e["promote"]["ci"][0] for e in row])
        high = np.array([e["promote"]["ci"][1] for e in row]) - rates
        axis.errorbar(gaps, 100 * rates, yerr=100 * np.vstack([low, high]), marker="o", capsize=3,
                      label=f"{size:,} requests")
    axis.axhline(5, color="grey", linestyle="--", linewidth=1, label="5% (false promotions allowed at gap 0)")
    axis.set_xlabel("candidate accuracy minus baseline accuracy (percentage points)")
    axis.set_ylabel("experiments recommending promote (%)")
    axis.set_title(f"Power of the A/B analysis ({results['experiments']} simulated experiments per point)")
    axis.set_ylim(-2, 102)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=500, help="simulated experiments per row")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000], help="requests per experiment")
    parser.add_argument("--gaps", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--latencies", type=float, nargs="+", default=[2.0, 5.0, 10.0, 20.0])
    parser.add_argument("--errors", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--demo-requests", type=int, default=500, help="the demo's experiment size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    results = run(args.experiments, args.sizes, args.gaps, args.latencies, args.errors, args.demo_requests, args.seed)
    write_evidence(args.out, "ab-calibration", results, render_markdown)
    plot(results, args.out / "ab-calibration.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
