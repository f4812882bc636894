"""Evidence for the routers, measured in one run with fixed seeds.

1. Simulation with known Bernoulli arms: the best arm's traffic share over time and cumulative regret
   against the oracle, for Thompson sampling, a fixed 70/15/15 split and epsilon-greedy, over many seeds.
2. Replay over the real test period with the real models: each day every window is routed to one model,
   and the realised next-day move rewards it one day late. Traffic share, regret against the best fixed
   model, and IPS / doubly-robust estimates of every policy's value from the logged propensities, next to
   the true value.
3. Regimes: every model's accuracy in every regime on the test period, and whether regime routing (rules and
   learned) beats the best single model.

    python -m seldon_market_ab.analysis.router_evidence   # full run (a few minutes): docs/router-evidence.{json,md} and
    plots
    market-ab readme                     # renders the README's evidence section from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from seldon_market_ab.evidence import write_evidence
from seldon_market_ab.regimes import REGIMES
from seldon_market_ab.routers.bandit import EpsilonGreedy, FixedSplit, ThompsonSampling
from seldon_market_ab.routers.bandit.replay import dr_terms, ips_terms, mean_reward_model, replay
from seldon_market_ab.routers.settings import RegimeRouterSettings, RouterSettings
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.dataset import MarketDataset
from seldon_market_ab.training.evaluation import wilson_interval
from seldon_market_ab.training.variants import VARIANTS

SIMULATED_MEANS = {"a (0.50)": 0.50, "b (0.53)": 0.53, "c (0.58)": 0.58}
BOOTSTRAP = 1000


def mean_ci(values) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return float(values.mean()), float(values.mean() - half), float(values.mean() + half)


def bootstrap_ci(values, seed=0) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# 1. simulation ----------------------------------------------------------------------------------------------

def simulate(seeds: int, horizon: int) -> dict:
    arms = tuple(SIMULATED_MEANS)
    means = np.array(list(SIMULATED_MEANS.values()))
    best = int(means.argmax())
    policies = {
        "Thompson sampling": lambda: ThompsonSampling(arms),
        "fixed split 70/15/15": lambda: FixedSplit({arms[0]: 70, arms[1]: 15, arms[2]: 15}),
        "epsilon-greedy (0.1)": lambda: EpsilonGreedy(arms, 0.1),
    }
    curves = {name: {"best_share": [], "regret": []} for name in policies}
    for seed in tqdm(range(seeds), desc="simulation seeds"):
        rewards = (np.random.default_rng(seed).random((horizon, len(arms))) < means).astype(float)
        for name, make in policies.items():
            log = replay(make(), rewards, delay=0, seed=seed)
            curves[name]["best_share"].append(log.chosen == best)
            curves[name]["regret"].append(np.cumsum(means[best] - means[log.chosen]))
    checkpoints = [c for c in (100, 500, 1000, 2000, 5000, 10000) if c <= horizon]
    table = {}
    for name, curve in curves.items():
        share, regret = np.array(curve["best_share"]), np.array(curve["regret"])
        table[name] = {
            "best_share_last_500_by_checkpoint": {c: mean_ci(share[:, max(0, c - 500):c].mean(axis=1))
                                                  for c in checkpoints},
            "regret_at_horizon": mean_ci(regret[:, -1]),
            "best_share_curve": share.mean(axis=0).tolist(),
            "regret_curve": regret.mean(axis=0).tolist(),
        }
    return {"seeds": seeds, "horizon": horizon, "means": SIMULATED_MEANS, "policies": table}


# 2. replay on the real test period --------------------------------------------------------------------------

def model_correctness(models_dir: Path, names, test) -> np.ndarray:
    """``[n, models]`` 1 where a model's served direction matched the realised move."""
    columns = []
    for name in names:
        artifact = LSTMArtifact.load(models_dir / name)
        columns.append(((artifact.predict_features(test.features) > 0.5) == test.label.astype(bool)).astype(float))
    return np.stack(columns, axis=1)


def chronological(test):
    order = np.lexsort((test.instrument, test.date))
    return order, np.unique(test.date[order], return_inverse=True)[1]


def _extra(models_dir: Path, model: str) -> dict:
    return json.loads((models_dir / model / "model-settings.json").read_text())["parameters"]["extra"]


def replay_real(models_dir: Path, seeds: int, dataset: MarketDataset) -> dict:
    config = RouterSettings.from_extra(_extra(models_dir, "thompson-router"))
    arms = config.arms
    test = dataset["test"]
    order, days = chronological(test)
    rewards = model_correctness(models_dir, arms, test)[order]
    truth = rewards.mean(axis=0)
    best_fixed = int(truth.argmax())
    policies = {
        "Thompson sampling (router settings)": lambda: config.policy(),
        "epsilon-greedy (0.1)": lambda: EpsilonGreedy(arms, 0.1),
        "uniform": lambda: FixedSplit({a: 1 for a in arms}),
    }
    results, logs = {}, {}
    for name, make in policies.items():
        runs = [replay(make(), rewards, batches=days, delay=1, seed=seed) for seed in
                tqdm(range(seeds), desc=f"replay {name}", leave=False)]
        logs[name] = runs
        accuracy = [log.reward.mean() for log in runs]
        regret = [rewards[:, best_fixed].sum() - log.reward.sum() for log in runs]
        shares = np.array([[np.mean(log.chosen == i) for i in range(len(arms))] for log in runs])
        last_year = days >= days.max() - 251
        late_shares = np.array([[np.mean(log.chosen[last_year] == i) for i in range(len(arms))] for log in runs])
        results[name] = {"accuracy": mean_ci(accuracy), "regret_vs_best_fixed": mean_ci(regret),
                         "traffic_share": dict(zip(arms, shares.mean(axis=0).tolist(), strict=True)),
                         "traffic_share_last_252_days": dict(zip(arms, late_shares.mean(axis=0).tolist(),
                                                                 strict=True)),
                         "share_curve": _share_curve(runs, len(arms))}

    # Off-policy: estimate each target policy's value from the Thompson logs, against the truth.
    targets = {f"always {a}": np.eye(len(arms))[i] for i, a in enumerate(arms)}
    targets["uniform"] = np.full(len(arms), 1 / len(arms))
    off_policy = {}
    for target_name, probabilities in targets.items():
        target = np.tile(probabilities, (len(rewards), 1))
        ips = [ips_terms(log, target).mean() for log in logs["Thompson sampling (router settings)"]]
        dr = [dr_terms(log, target, mean_reward_model(log)).mean() for log in
              logs["Thompson sampling (router settings)"]]
        first = logs["Thompson sampling (router settings)"][0]
        off_policy[target_name] = {
            "true": float((rewards * target).sum(axis=1).mean()),
            "ips": mean_ci(ips), "dr": mean_ci(dr),
            "ips_seed0_bootstrap": bootstrap_ci(ips_terms(first, target)),
            "dr_seed0_bootstrap": bootstrap_ci(dr_terms(first, target, mean_reward_model(first))),
        }
    return {"seeds": seeds, "n": int(len(rewards)), "days": int(days.max() + 1), "arms": list(arms),
            "true_accuracy": {a: wilson_ci_dict(rewards[:, i]) for i, a in enumerate(arms)},
            "best_fixed": arms[best_fixed], "policies": results, "off_policy": off_policy,
            "min_share": config.min_share, "warmup_rewards": config.warmup_rewards}


def _share_curve(runs, arms: int, window: int = 250) -> list[list[float]]:
    chosen = np.array([log.chosen for log in runs])
    kernel = np.ones(window) / window
    return [np.convolve((chosen == i).mean(axis=0), kernel, mode="valid")[::25].tolist() for i in range(arms)]


def wilson_ci_dict(correct) -> tuple[float, float, float]:
    low, high = wilson_interval(float(np.sum(correct)), len(correct))
    return float(np.mean(correct)), low, high


# 3. regimes -------------------------------------------------------------------------------------------------

def regimes(models_dir: Path, seeds: int, dataset: MarketDataset) -> dict:
    names = list(VARIANTS)
    config = RegimeRouterSettings.from_extra(_extra(models_dir, "regime-router"))
    test = dataset["test"]
    order, days = chronological(test)
    correct = model_correctness(models_dir, names, test)[order]
    regime = test.regime[order]
    by_regime = {}
    for r, regime_name in enumerate(REGIMES):
        mask = regime == r
        by_regime[regime_name] = {"n": int(mask.sum()),
                                  **{name: wilson_ci_dict(correct[mask, i]) for i, name in enumerate(names)}}
    overall = {name: wilson_ci_dict(correct[:, i]) for i, name in enumerate(names)}
    best = max(names, key=lambda n: overall[n][0])
    best_correct = correct[:, names.index(best)]

    route_index = np.array([names.index(config.routes[REGIMES[r]]) for r in regime])
    rules_correct = correct[np.arange(len(correct)), route_index]
    arms = config.arms
    arm_columns = [names.index(a) for a in arms]
    learned_runs = [replay(config.policy(), correct[:, arm_columns], batches=days, delay=1, seed=seed,
                           contexts=regime) for seed in tqdm(range(seeds), desc="learned regime replay", leave=False)]
    learned_correct = np.mean([log.reward for log in learned_runs], axis=0)
    return {
        "n": int(len(correct)), "models": names, "routes": config.routes, "thresholds": vars(config.thresholds),
        "by_regime": by_regime, "overall": overall, "best_single": best,
        "rules": wilson_ci_dict(rules_correct), "learned": mean_ci([log.reward.mean() for log in learned_runs]),
        "rules_minus_best": bootstrap_ci(rules_correct - best_correct),
        "learned_minus_best": bootstrap_ci(learned_correct - best_correct),
        "seeds": seeds,
    }


# rendering --------------------------------------------------------------------------------------------------

def _p(value, digits=1) -> str:
    return f"{100 * value:.{digits}f}"


def _ci(triple, scale=100, digits=1) -> str:
    mean, low, high = triple
    return f"{scale * mean:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def render_markdown(results: dict) -> str:
    sim, real, reg = results["simulation"], results["replay"], results["regimes"]
    checkpoints = list(next(iter(sim["policies"].values()))["best_share_last_500_by_checkpoint"])
    lines = [
        f"Generated by `python -m seldon_market_ab.analysis.router_evidence` "
        f"(seeds fixed; {sim['seeds']} simulation seeds, "
        f"{real['seeds']} replay seeds). Intervals are 95%: across seeds (mean ± 1.96 SE) unless marked "
        "bootstrap (1,000 resamples of rounds) or Wilson.",
        "",
        f"**Simulation**: Bernoulli arms {', '.join(sim['means'])}, horizon {sim['horizon']}, immediate rewards. "
        "Share of the best arm (c) among the 500 decisions before each step, and cumulative regret against "
        "always playing c.",
        "",
        "| policy | " + " | ".join(f"best-arm share % at {c}" for c in checkpoints) +
        f" | regret at {sim['horizon']} |",
        "|---|" + "---|" * (len(checkpoints) + 1),
    ]
    for name, row in sim["policies"].items():
        shares = row["best_share_last_500_by_checkpoint"]
        lines.append(f"| {name} | " + " | ".join(_ci(shares[c]) for c in checkpoints) +
                     f" | {_ci(row['regret_at_horizon'], scale=1)} |")
    lines += [
        "",
        "![simulation](router-simulation.png)",
        "",
        f"**Replay over the real test period** ({real['n']} instrument-days on {real['days']} trading days): "
        f"arms {', '.join(real['arms'])}; reward 1 when the model's direction was right, delivered one trading "
        f"day late. Thompson sampling uses the router's settings (min share {real['min_share']}, warm-up "
        f"{real['warmup_rewards']} rewards per arm).",
        "",
        "| arm | true accuracy % [Wilson] |",
        "|---|---|",
    ]
    lines += [f"| {a} | {_ci(v)} |" for a, v in real["true_accuracy"].items()]
    lines += [
        "",
        f"| policy | accuracy % | regret vs best fixed ({real['best_fixed']}), correct calls | traffic share % "
        "(whole period) | traffic share % (last 252 days) |",
        "|---|---|---|---|---|",
    ]
    for name, row in real["policies"].items():
        share = ", ".join(f"{a} {_p(v, 0)}" for a, v in row["traffic_share"].items())
        late = ", ".join(f"{a} {_p(v, 0)}" for a, v in row["traffic_share_last_252_days"].items())
        lines.append(f"| {name} | {_ci(row['accuracy'])} | {_ci(row['regret_vs_best_fixed'], scale=1)} | "
                     f"{share} | {late} |")
    lines += [
        "",
        "![replay traffic share](router-replay.png)",
        "",
        "Off-policy estimates of other policies' accuracy (%) from the Thompson-sampling logs and their "
        "propensities, next to the truth (known here because every model's correctness is known):",
        "",
        "| target policy | true | IPS (across seeds) | DR (across seeds) | IPS, one log (bootstrap) | "
        "DR, one log (bootstrap) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in real["off_policy"].items():
        lines.append(f"| {name} | {_p(row['true'])} | {_ci(row['ips'])} | {_ci(row['dr'])} | "
                     f"{_ci(row['ips_seed0_bootstrap'])} | {_ci(row['dr_seed0_bootstrap'])} |")
    lines += [
        "",
        f"**Regimes on the test period** ({reg['n']} instrument-days): accuracy % [Wilson] of every model in "
        "every regime.",
        "",
        "| regime | n | " + " | ".join(reg["models"]) + " |",
        "|---|---|" + "---|" * len(reg["models"]),
    ]
    for regime_name, row in reg["by_regime"].items():
        lines.append(f"| {regime_name} | {row['n']} | " + " | ".join(_ci(row[m]) for m in reg["models"]) + " |")
    lines.append("| all | " + str(reg["n"]) + " | " + " | ".join(_ci(reg["overall"][m]) for m in reg["models"]) + " |")
    verdict = []
    for label, key in (("rules", "rules_minus_best"), ("learned", "learned_minus_best")):
        mean, low, high = reg[key]
        word = "beats" if low > 0 else "loses to" if high < 0 else "is indistinguishable from"
        verdict.append(f"{label} routing {word} the best single model ({reg['best_single']}): "
                       f"{_ci(reg[key])} pp (bootstrap)")
    lines += [
        "",
        "| routing | accuracy % |",
        "|---|---|",
        f"| rules ({', '.join(f'{k} → {v}' for k, v in reg['routes'].items())}) | {_ci(reg['rules'])} |",
        f"| learned (one Thompson sampler per regime, {reg['seeds']} seeds) | {_ci(reg['learned'])} |",
        f"| best single model: {reg['best_single']} | {_ci(reg['overall'][reg['best_single']])} |",
        "",
        "Measured verdict: " + "; ".join(verdict) + ".",
    ]
    return "\n".join(lines)


def plot(results: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = results["simulation"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, row in sim["policies"].items():
        share = np.convolve(row["best_share_curve"], np.ones(100) / 100, mode="valid")
        axes[0].plot(np.arange(len(share)) + 100, share, label=name)
        axes[1].plot(row["regret_curve"], label=name)
    axes[0].set(title=f"best arm's traffic share (100-step mean, {sim['seeds']} seeds)", xlabel="decision",
                ylim=(0, 1))
    axes[1].set(title="cumulative regret vs the oracle (mean over seeds)", xlabel="decision")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "router-simulation.png", dpi=100)
    plt.close(fig)

    real = results["replay"]
    fig, axes = plt.subplots(1, len(real["policies"]), figsize=(15, 3.8), sharey=True)
    for axis, (name, row) in zip(axes, real["policies"].items(), strict=True):
        for arm, curve in zip(real["arms"], row["share_curve"], strict=True):
            axis.plot(np.arange(len(curve)) * 25 + 250, curve, label=arm)
        axis.set(title=name, xlabel="instrument-day (chronological)", ylim=(0, 1))
    axes[0].set_ylabel("traffic share (250-round mean)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "router-replay.png", dpi=100)
    plt.close(fig)


def load_results(path: Path) -> dict:
    """The stored evidence, with the simulation checkpoints (JSON object keys) back as integers."""
    def int_keys(pairs):
        return {int(k) if k.isdigit() else k: v for k, v in pairs}

    return json.loads(Path(path).read_text(), object_pairs_hook=int_keys)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=5000)
    parser.add_argument("--replay-seeds", type=int, default=20)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    lengths = {v.sequence_length for v in VARIANTS.values()}
    if len(lengths) != 1:
        raise SystemExit(f"the variants use several sequence lengths {sorted(lengths)}; replay needs one")
    dataset = MarketDataset(sequence_length=lengths.pop())
    results = {
        "simulation": simulate(args.seeds, args.horizon),
        "replay": replay_real(args.models_dir, args.replay_seeds, dataset),
        "regimes": regimes(args.models_dir, args.replay_seeds, dataset),
    }
    write_evidence(args.out, "router-evidence", results, render_markdown)
    plot(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
