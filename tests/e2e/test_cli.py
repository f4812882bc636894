"""The market-ab console script, as installed by `make`."""

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from seldon_market_ab.analysis.report import ExperimentRun, analyse, look_at
from seldon_market_ab.cli.commands import build_parser
from seldon_market_ab.cli.demo import FAULT
from seldon_market_ab.regimes import REGIMES
from seldon_market_ab.routers.settings import RegimeRouterSettings

from ..conftest import MARKET_AB, MODELS, REPO


def market_ab(*args, cwd=None):
    return subprocess.run([*MARKET_AB, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_evaluate_prints_the_stored_table():
    result = market_ab("--models-dir", str(MODELS), "evaluate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "data", "n"]
    assert sum(line.startswith("conservative") for line in lines) == 4  # overall + three instruments


@pytest.mark.parametrize("before", [True, False], ids=["before-the-subcommand", "after-it"])
def test_evaluate_without_models_says_what_to_do(tmp_path, before):
    option = ["--models-dir", str(tmp_path)]
    result = market_ab(*option, "evaluate") if before else market_ab("evaluate", *option)
    assert result.returncode == 1 and "market-ab train" in result.stderr and str(tmp_path) in result.stderr


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every runnable command ((train,), (manifests, check), ...) with its parser and the positionals it needs, read
    from the parser itself so that a subcommand added later is covered without being listed here."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
            return
    needed = [a for a in parser._actions if not a.option_strings and a.nargs not in ("*", "?")]
    yield path, parser, [str(a.choices[0]) if a.choices else "x" for a in needed]


COMMANDS = list(_commands(build_parser()))


def test_every_subcommand_is_covered():
    assert {" ".join(path) for path, _, _ in COMMANDS} >= {
        "train", "reference", "evaluate", "demo", "readme", "manifests check", "serve", "infer"}


@pytest.mark.parametrize("path, sub, positionals", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_models_dir_is_accepted_before_and_after_the_subcommand(path, sub, positionals):
    """Where users type it (`market-ab serve --models-dir DIR`, as the docs show it) and where it always worked
    (`market-ab --models-dir DIR serve`); given twice, the one after the subcommand wins."""
    def models_dir(*argv):
        return build_parser().parse_args(argv).models_dir

    assert models_dir(*path, *positionals) == Path("models")
    for at in range(len(path) + 1):  # before the subcommand, between nested ones (manifests check), after it
        assert models_dir(*path[:at], "--models-dir", "given", *path[at:], *positionals) == Path("given")
    assert models_dir(*path, *positionals, "--models-dir", "given") == Path("given")  # after its arguments too
    assert models_dir("--models-dir", "before", *path, "--models-dir", "after", *positionals) == Path("after")
    assert "--models-dir" in sub.format_help()  # `market-ab serve --help` lists it


def test_train_if_missing_trains_only_what_is_missing(tmp_path):
    for name in ("baseline", "enhanced", "robust", "aggressive", "conservative"):
        shutil.copytree(MODELS / name, tmp_path / name)
    result = market_ab("--models-dir", str(tmp_path), "train", "--if-missing", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lightweight" / "model.pt").exists()
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["lightweight"] * 4


def test_demo_end_to_end(tmp_path):
    """`market-ab demo` on a copy of the repository, as `make demo` runs it but smaller: every experiment's counts add
    up, the A/A split is consistent with its configuration (and an unfair configuration is a sample ratio mismatch),
    the faulty candidate is rolled back, the report opens as HTML with its plots, and no router state lands in the
    model folders."""
    repository = tmp_path / "models"
    shutil.copytree(MODELS, repository)
    before = sorted(p.relative_to(repository) for p in repository.rglob("*"))
    result = market_ab("--models-dir", str(repository), "demo", "--scenarios", "120", "--workers", "2",
                       "--reports-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "reports").iterdir()
    report = json.loads((folder / "report.json").read_text())
    experiments = {e["name"]: e for e in report["experiments"]}
    assert [(e["name"], e["kind"]) for e in report["experiments"]] == [
        ("aa-test", "aa"), ("ab-test", "ab"), ("mab", "ab"), ("contextual", "ab"), ("retrain-rollout", "rollout"),
        ("fault-test", "faulty"), ("faulty-rollout", "rollout"), ("enhanced-rollout", "rollout")]
    for experiment in report["experiments"]:
        counts = experiment["counts"]
        assert counts["sent"] == 2 * 120 == counts["answered"] + counts["failed"]  # every day once, two instruments
        assert sum(arm["n"] for arm in experiment["arms"].values()) == counts["sent"]
        assert experiment["recommendation"]["decision"] in ("promote", "keep_baseline", "continue", "roll_back")
    for name in ("mab", "contextual"):  # every answer's reward reached the router that decided it
        assert experiments[name]["counts"]["feedback_applied"] == experiments[name]["counts"]["answered"]
        assert set(experiments[name]["off_policy"]) == set(experiments[name]["arms"])
    # the regime of each day, computed from prices by the report, is the one the regime router routed by
    settings = json.loads((MODELS / "regime-router" / "model-settings.json").read_text())
    router = RegimeRouterSettings.from_extra(settings["parameters"].get("extra", {}), "regime-router")
    assert router.mode == "rules"
    specialist = {regime: getattr(router, f"route_{regime}") for regime in REGIMES}
    assert {regime: set(cells) for regime, cells in experiments["contextual"]["regimes"].items()} == \
        {regime: {specialist[regime]} for regime in experiments["contextual"]["regimes"]}
    assert not experiments["aa-test"]["srm"]["mismatch"] and not experiments["ab-test"]["srm"]["mismatch"]
    unfair = analyse(ExperimentRun("aa-test", "aa", "aa-test.experiment", "baseline",
                                   {"baseline": 80, "baseline-copy": 20}, Path(folder) / "logs" / "aa-test.jsonl"))
    assert unfair["srm"]["mismatch"] and unfair["recommendation"]["decision"] == "keep_baseline"
    assert experiments["fault-test"]["recommendation"]["decision"] == "roll_back"
    # the autopilot rolled the faulty candidate back, and its exposure is every request the traffic sent it
    rollout = experiments["faulty-rollout"]["rollout"]
    assert rollout["phase"] == "rolled_back", rollout["reasons"]
    sent_to_faulty = experiments["faulty-rollout"]["arms"]["faulty"]["n"]
    assert 0 < rollout["candidate_requests"] == sent_to_faulty
    for name in ("faulty-rollout", "enhanced-rollout"):  # each split held to the weights in force at the time
        assert not experiments[name]["rollout"]["srm"]["mismatch"], experiments[name]["rollout"]["srm"]
    # a drift alert became version 2 of lightweight, trained before the replay, and its rollout reached an end
    retraining = experiments["retrain-rollout"]["retraining"]
    assert retraining["alert"]["alertname"] == "MarketAbInputDrift" and retraining["version"] == 2
    assert retraining["training_window"]["validation"]["last_label"] <= retraining["cut"] < \
        retraining["comparison"]["days"]["first"]
    assert retraining["result"] in ("promoted", "kept_baseline", "rolled_back", "aborted"), retraining
    assert "real: the replayed days" in retraining["what"] or "injected" in retraining["what"]
    stages = [e["what"] for e in retraining["events"]]
    assert stages.index("training began") < stages.index("version registered") < \
        stages.index("Model and Experiment applied") < stages.index("rollout decided")
    assert set(experiments["retrain-rollout"]["arms"]) <= {"lightweight", "lightweight-v2"}
    # begun with the segment: its rollout met the segment's traffic
    assert experiments["retrain-rollout"]["rollout"]["candidate_requests"] > 0
    assert experiments["retrain-rollout"]["rollout"]["candidate"] == "lightweight-v2"
    assert not (repository / "lightweight" / "versions").exists()  # written into the demo's copy, not the repository
    assert {d["instrument"] for d in report["drift"]} == {"sp500", "nasdaq"}  # the detector judged the replay
    assert all(d["is_drift"] in (0, 1) and d["first_date"] < d["last_date"] for d in report["drift"])
    assert experiments["fault-test"]["counts"]["failed"] > 0
    assert experiments["aa-test"]["recommendation"]["decision"] != "promote"
    # each arm's live outcomes, three ways: the Locust log, the outcomes store, Prometheus; equal counts
    for experiment in report["experiments"]:
        live = experiment["live"]
        assert live["store_equals_log"] and live["prometheus_equals_store"], (experiment["name"], live)
        stored = sum(arm["store"]["outcomes"] for arm in live["arms"].values() if arm["store"])
        assert stored == experiment["counts"]["answered"], experiment["name"]  # one outcome per answer
        assert set(live["arms"]) == {name for name, arm in experiment["arms"].items() if arm["served"]}
    # the faulty candidate's alerts fired in the real Prometheus; no baseline alert did
    fired = {(a["alertname"], a["labels"].get("model")) for a in report["prometheus"]["alerts"]}
    assert {("MarketAbErrorRate", "faulty"), ("MarketAbLatencyHigh", "faulty")} <= fired, fired
    assert not {pair for pair in fired if pair[1] == "baseline"}, fired
    plots = [png for png in folder.glob("*.png") if png.name != "report-screenshot.png"]
    html = (folder / "report.html").read_text()
    assert len(plots) == 12 and all(f'src="{png.name}"' in html for png in plots)
    assert "What Prometheus saw" in html and "MarketAbErrorRate" in html
    # the demo opened the report in headless Chromium and kept a screenshot; every plot loads, and a missing one shows
    assert (folder / "report-screenshot.png").stat().st_size > 50_000
    assert look_at(folder / "report.html", tmp_path / "again.png")["images_loaded"] == 12
    plots[0].unlink()
    assert look_at(folder / "report.html", tmp_path / "again.png")["images_loaded"] == 11  # one fewer
    assert "roll_back" in result.stdout and str(folder / "report.html") in result.stdout
    assert sorted(p.relative_to(repository) for p in repository.rglob("*")) == before
    page = (REPO / "docs" / "demo.md").read_text()  # the docs describe the fault that was injected
    described = f"{FAULT['added_latency_ms']:g} ms of added latency, {FAULT['failure_rate']:.0%} of requests failed"
    assert described in page
    assert report["fault"] == FAULT
