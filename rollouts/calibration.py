"""How often the rollout loop decides wrongly, how often it promotes what is better, and how many requests a faulty
candidate answers before it is rolled back, by simulation: ``rollouts/simulation.py`` drives the controller's own
``decide`` with seeded traffic (each arm's failures, log-normal latencies and accuracy; outcomes one interval late).

The traffic is the demo's: the requests its fault-test experiment sent (``docs/demo-report/report.json``), spread
over a rollout of ``ROLLOUT_SECONDS``, and ten times that. Every rollout runs the documented example's steps
(``EXAMPLE_STEPS``) every ``INTERVAL_SECONDS``, with the document's defaults otherwise.

    python -m seldon_market_ab.rollouts.calibration      # about a minute; writes docs/rollout-calibration.{json,md}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.training.evaluation import wilson_interval

from .controller import PROMOTED, ROLLED_BACK
from .document import RolloutSpec
from .simulation import ArmModel, simulate

EXAMPLE_STEPS = (10, 25, 50)  # docs/rollouts.md's example
INTERVAL_SECONDS = 5.0
ROLLOUT_SECONDS = 300.0  # each simulated rollout's maxDuration: 60 looks
BASE = ArmModel(accuracy=0.54)  # about the shipped models' test accuracy (README, Evaluation)
FAULTY = ArmModel(accuracy=0.54, failure_rate=0.1, added_ms=30.0)  # the demo's faulty candidate
BETTER = ArmModel(accuracy=0.64)
GOALS = {"aa_superior_promoted": 0.05, "faulty_rolled_back": 0.99, "faulty_exposure_median": 30,
         "faulty_exposure_p95": 60}


def demo_requests(report: Path) -> int:
    """How many requests the demo's fault-test experiment sent."""
    return next(e["counts"]["sent"] for e in json.loads(report.read_text())["experiments"]
                if e["name"] == "fault-test")


def scenario(name: str, candidate: ArmModel, policy: str, rate: float, seconds: float, runs: int, seed: int) -> dict:
    spec = RolloutSpec(experiment="e", baseline="baseline", candidate="candidate", steps=EXAMPLE_STEPS,
                       interval=INTERVAL_SECONDS, maxDuration=seconds, promote={"policy": policy})
    ended = [simulate(spec, BASE, candidate, rate, seed + i)
             for i in tqdm(range(runs), desc=name, leave=False, mininterval=1.0)]
    phases = [run.phase for run in ended]
    exposure = [run.candidate_requests for run in ended if run.phase == ROLLED_BACK]

    def share(phase: str) -> dict:
        k = phases.count(phase)
        low, high = wilson_interval(k, runs)
        return {"rate": k / runs, "interval": [low, high], "count": k}

    return {"name": name, "policy": policy, "requests_per_second": rate, "runs": runs,
            "promoted": share(PROMOTED), "rolled_back": share(ROLLED_BACK),
            "exposure_median": float(np.median(exposure)) if exposure else None,
            "exposure_p95": float(np.percentile(exposure, 95)) if exposure else None,
            "seconds_median": float(np.median([run.seconds for run in ended]))}


def run(report: Path, runs: int, seed: int) -> dict:
    requests, seconds = demo_requests(report), ROLLOUT_SECONDS
    rate = requests / seconds
    rows = [scenario("aa_superior", BASE, "superior", rate * 10, seconds, runs, seed),
            scenario("aa_noninferior", BASE, "noninferior", rate * 10, seconds, runs, seed),
            scenario("faulty", FAULTY, "superior", rate, seconds, runs, seed),
            scenario("faulty_10x", FAULTY, "superior", rate * 10, seconds, runs, seed),
            scenario("better", BETTER, "superior", rate, seconds, runs, seed),
            scenario("better_10x", BETTER, "superior", rate * 10, seconds, runs, seed)]
    by = {row["name"]: row for row in rows}
    met = {"aa_superior_promoted": by["aa_superior"]["promoted"]["rate"] <= GOALS["aa_superior_promoted"],
           "faulty_rolled_back": by["faulty"]["rolled_back"]["rate"] >= GOALS["faulty_rolled_back"],
           "faulty_exposure_median": by["faulty"]["exposure_median"] is not None
           and by["faulty"]["exposure_median"] <= GOALS["faulty_exposure_median"],
           "faulty_exposure_p95": by["faulty"]["exposure_p95"] is not None
           and by["faulty"]["exposure_p95"] <= GOALS["faulty_exposure_p95"]}
    return {"demo_requests": requests, "demo_seconds": seconds, "steps": list(EXAMPLE_STEPS),
            "interval_seconds": INTERVAL_SECONDS, "seed": seed, "runs": runs, "rows": rows, "goals": GOALS,
            "met": met}


NAMES = {"aa_superior": "A/A, promote superior", "aa_noninferior": "A/A, promote noninferior (margin 2 points)",
         "faulty": "faulty (+30 ms, 10% failures)", "faulty_10x": "faulty, 10× traffic",
         "better": "10 points more accurate", "better_10x": "10 points more accurate, 10× traffic"}


def render_markdown(results: dict) -> str:
    lines = [f"From `python -m seldon_market_ab.rollouts.calibration`"
             f": {results['runs']} seeded rollouts per row, steps "
             f"{results['steps']} every {results['interval_seconds']:g} s for at most {results['demo_seconds']:g} s "
             "(`maxDuration`), the document's defaults otherwise; the demo's traffic is its fault-test "
             f"experiment's {results['demo_requests']} requests spread over those {results['demo_seconds']:g} s. "
             "Rates with 95% intervals; exposure: requests the candidate answered or failed before a rollback.", "",
             "| candidate | requests/s | promoted | rolled back | exposure median | exposure p95 | seconds (median) |",
             "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        rolled = row["exposure_median"] is not None
        lines.append(f"| {NAMES[row['name']]} | {row['requests_per_second']:.1f} | {_rate(row['promoted'])} | "
                     f"{_rate(row['rolled_back'])} | {row['exposure_median']:.0f} | "
                     f"{row['exposure_p95']:.0f} | {row['seconds_median']:.0f} |" if rolled else
                     f"| {NAMES[row['name']]} | {row['requests_per_second']:.1f} | {_rate(row['promoted'])} | "
                     f"{_rate(row['rolled_back'])} | - | - | {row['seconds_median']:.0f} |")
    goals, met = results["goals"], results["met"]

    def verdict(key: str) -> str:
        return "met" if met[key] else "**missed**"

    lines += ["", f"Goals: A/A promoted under `superior` at most {goals['aa_superior_promoted']:.0%} "
                  f"({verdict('aa_superior_promoted')}); the faulty candidate rolled back at least "
                  f"{goals['faulty_rolled_back']:.0%} of the time ({verdict('faulty_rolled_back')}) after a median "
                  f"of at most {goals['faulty_exposure_median']} requests ({verdict('faulty_exposure_median')}) and "
                  f"a 95th percentile of at most {goals['faulty_exposure_p95']} ({verdict('faulty_exposure_p95')}), "
                  "at the demo's traffic."]
    return "\n".join(lines)


def _rate(entry: dict) -> str:
    low, high = entry["interval"]
    return f"{entry['rate']:.1%} [{low:.1%}, {high:.1%}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, default=Path("docs/demo-report/report.json"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = run(args.report, args.runs, args.seed)
    results["seconds"] = time.monotonic() - started
    write_evidence(args.out, "rollout-calibration", results, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
