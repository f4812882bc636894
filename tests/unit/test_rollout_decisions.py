"""A rollout's document, gates and decisions, pure (``rollouts/``): the statistics on aggregated counts, and the
loop's decisions driven by seeded simulations of each arm (the same ``c.decide`` that ``market-ab rollout run``
calls)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from seldon_market_ab.metrics import LATENCY_BUCKETS
from seldon_market_ab.rollouts import controller as c
from seldon_market_ab.rollouts import gates as g
from seldon_market_ab.rollouts.document import MirrorPhase, Rollout, RolloutError, RolloutSpec
from seldon_market_ab.rollouts.simulation import ArmModel, simulate

SPEC = RolloutSpec(experiment="ab", baseline="baseline", candidate="enhanced", steps=(10, 25, 50), interval=5,
                   minOutcomes=50)


def buckets(latencies_ms) -> tuple:
    edges = [*LATENCY_BUCKETS, math.inf]
    counts = np.bincount(np.searchsorted(edges, np.asarray(latencies_ms) / 1e3), minlength=len(edges))
    return tuple(zip(edges, np.cumsum(counts).tolist(), strict=True))


def arm(requests=500, errors=0, outcomes=0, correct=0, latency_ms=8.0, rng=None) -> g.ArmFigures:
    rng = rng or np.random.default_rng(0)
    latencies = latency_ms * np.exp(0.3 * rng.standard_normal(requests - errors))
    return g.ArmFigures(requests, errors, outcomes, correct, 0.0, buckets(latencies))


# the document -------------------------------------------------------------------------------------------------------

def test_a_full_document_reads_with_its_field_names():
    rollout = Rollout.from_yaml("""
apiVersion: market-ab.io/v1alpha1
kind: Rollout
metadata: {name: faulty-canary}
spec:
  experiment: fault-test
  baseline: baseline
  candidate: faulty
  steps: [5, 20, 50, 80]
  interval: 1m30s
  minOutcomes: 200
  gates: {errorRate: {margin: 0.02}, latency: {ratio: 1.5, slackMs: 10}, accuracy: {alpha: 0.01}, minRequests: 30}
  promote: {policy: noninferior, margin: 0.03}
  maxDuration: 2h
  prometheus: http://prometheus.monitoring:9090
  webhooks: [{name: slack, url: "https://hooks.example/x", events: [rollback, promote]}]
""")
    spec = rollout.spec
    assert rollout.name == "faulty-canary" and spec.steps == (5, 20, 50, 80)
    assert (spec.interval, spec.max_duration, spec.min_outcomes) == (90.0, 7200.0, 200)
    assert spec.gates.latency.slack_ms == 10 and spec.gates.min_requests == 30 and spec.promote.margin == 0.03


def test_the_examples_are_valid_documents():
    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "rollouts").glob("*.yaml"))
    assert examples
    for path in examples:
        Rollout.from_yaml(path.read_text(), str(path))


@pytest.mark.parametrize("spec, expected", [
    ("{experiment: e, baseline: a, candidate: b}", "spec.steps: required field is missing"),
    ("{experiment: e, baseline: a, candidate: b, steps: [0, 50]}", "each step is a candidate weight in percent"),
    ("{experiment: e, baseline: a, candidate: b, steps: [10], interval: -5}", "spec.interval: Input should be "
                                                                               "greater than 0"),
    ("{experiment: e, baseline: a, candidate: b, steps: [10], minOutcome: 5}", "spec.minOutcome: unknown field"),
    ("{experiment: e, baseline: a, candidate: b, steps: [10], prometheus: localhost:9090}", "spec.prometheus"),
    ("{experiment: e, baseline: a, candidate: a, steps: [10]}", "spec: the candidate 'a' is also the baseline"),
])
def test_each_problem_is_a_line_naming_its_field(spec, expected):
    with pytest.raises(RolloutError) as caught:
        Rollout.from_yaml(f"apiVersion: market-ab.io/v1alpha1\nkind: Rollout\nmetadata: {{name: r}}\nspec: {spec}\n")
    assert expected in str(caught.value)


# the gates ----------------------------------------------------------------------------------------------------------

def test_the_error_gate_fails_a_candidate_that_fails_and_waits_for_requests():
    assert g.error_rate(SPEC, arm(500), arm(19, 10)).verdict == g.INCONCLUSIVE  # minRequests 20
    failing = g.error_rate(SPEC, arm(500), arm(100, 10))
    assert failing.verdict == g.FAIL and failing.figures["difference_ci"][0] > 0.01
    assert g.error_rate(SPEC, arm(500, 1), arm(100, 0)).verdict == g.PASS


def test_the_latency_gate_bounds_the_candidates_p99_from_below():
    rng = np.random.default_rng(1)
    slow = g.latency(SPEC, arm(500, rng=rng), arm(60, latency_ms=40.0, rng=rng))
    assert slow.verdict == g.FAIL and slow.figures["candidate_p99_lower_bound_ms"] > slow.figures["limit_ms"]
    assert g.latency(SPEC, arm(500, rng=rng), arm(60, rng=rng)).verdict == g.PASS
    # one answer in a hundred slow is within the p99's allowance
    fast = 8.0 * np.exp(0.3 * rng.standard_normal(200))
    mixed = g.ArmFigures(200, 0, latency=buckets(np.r_[fast[:198], 60.0, 60.0]))
    assert g.latency(SPEC, arm(500, rng=rng), mixed).verdict == g.PASS


def test_the_accuracy_gate_fails_a_worse_candidate_and_remembers_its_smallest_p():
    worse = g.accuracy(SPEC, arm(outcomes=2000, correct=1100), arm(outcomes=2000, correct=900), 1.0)
    assert worse.verdict == g.FAIL and worse.figures["difference"] == pytest.approx(-0.1)
    better = g.accuracy(SPEC, arm(outcomes=2000, correct=900), arm(outcomes=2000, correct=1100), 1.0)
    assert better.verdict == g.PASS and better.figures["always_valid_p"] == 1.0  # only looks that found it worse
    remembered = g.accuracy(SPEC, arm(outcomes=10, correct=5), arm(outcomes=10, correct=5), 0.01)
    assert remembered.verdict == g.FAIL and remembered.figures["always_valid_p"] == 0.01


def test_the_promote_policies():
    superior = SPEC
    noninferior = SPEC.model_copy(update={"promote": SPEC.promote.model_copy(update={"policy": "noninferior"})})
    equal = arm(outcomes=20000, correct=10600), arm(outcomes=20000, correct=10600)
    assert g.promotion(superior, *equal, 1.0).verdict == g.INCONCLUSIVE
    assert g.promotion(noninferior, *equal, 1.0).verdict == g.PASS  # 20,000 each rule out 2 points worse
    better = arm(outcomes=2000, correct=1000), arm(outcomes=2000, correct=1200)
    assert g.promotion(superior, *better, 1.0).verdict == g.PASS


# the decisions ------------------------------------------------------------------------------------------------------

def test_a_step_holds_until_its_outcomes_and_guardrails_then_advances():
    progress = c.Progress.begin(0.0)
    early = c.decide(SPEC, progress, arm(40), arm(5), 5.0)
    assert early.action == c.HOLD and early.candidate_weight == 10
    assert "0 of 50 candidate outcomes in this step" in early.reasons
    ready = c.decide(SPEC, progress, arm(500, outcomes=450, correct=240), arm(60, outcomes=55, correct=30), 60.0)
    assert ready.action == c.ADVANCE and ready.candidate_weight == 25
    assert (ready.progress.step, ready.progress.step_started, ready.progress.step_outcomes) == (1, 60.0, 55)
    again = c.decide(SPEC, ready.progress, arm(600, outcomes=500, correct=260), arm(80, outcomes=70, correct=40), 65.0)
    assert again.action == c.HOLD and "15 of 50 candidate outcomes in this step" in again.reasons


def test_a_failed_gate_rolls_back_at_once_whatever_the_step():
    progress = c.Progress(started=0.0, step_started=50.0, step=2, step_outcomes=100)
    decision = c.decide(SPEC, progress, arm(500), arm(100, 12), 55.0)
    assert decision.action == c.ROLL_BACK and decision.progress.phase == c.ROLLED_BACK
    assert decision.weights == {"baseline": 100, "candidate": 0}
    assert decision.reasons[0].startswith("error_rate: candidate fails")


def test_max_duration_keeps_the_baseline():
    decision = c.decide(SPEC, c.Progress.begin(0.0), arm(40), arm(5), SPEC.max_duration)
    assert decision.action == c.KEEP_BASELINE and decision.progress.phase == c.KEPT_BASELINE
    assert decision.candidate_weight == 0 and "maxDuration" in decision.reasons[0]


def test_the_last_step_promotes_by_the_policy():
    last = c.Progress(started=0.0, step_started=100.0, step=2, step_outcomes=0)
    baseline = arm(2000, outcomes=2000, correct=1000)
    decision = c.decide(SPEC, last, baseline, arm(2000, outcomes=2000, correct=1200), 200.0)
    assert decision.action == c.PROMOTE and decision.progress.phase == c.PROMOTED and decision.candidate_weight == 100
    waiting = c.decide(SPEC, last, baseline, arm(2000, outcomes=2000, correct=1010), 200.0)
    assert waiting.action == c.HOLD and waiting.candidate_weight == 50 and waiting.progress.phase == c.PROGRESSING


def test_simulated_rollouts_end_as_their_candidates_deserve():
    faulty = [simulate(SPEC, ArmModel(), ArmModel(failure_rate=0.1, added_ms=30.0), 10, seed) for seed in range(20)]
    assert {run.phase for run in faulty} == {c.ROLLED_BACK}
    better = [simulate(SPEC, ArmModel(), ArmModel(accuracy=0.63), 10, seed) for seed in range(20)]
    assert {run.phase for run in better} == {c.PROMOTED}
    for run in better:  # through every step in order, never skipping one
        weights = [d.candidate_weight for d in run.decisions]
        assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [10, 25, 50, 100]


def test_the_error_gate_counts_what_the_error_rate_alert_counts():
    import yaml

    from seldon_market_ab.rollouts.figures import SERVER_FAILURE

    rules = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests/base/monitoring/prometheusrule.yaml")
                           .read_text())
    expr = next(rule["expr"] for group in rules["spec"]["groups"] for rule in group["rules"]
                if rule.get("alert") == "MarketAbErrorRate")
    assert f'code=~"{SERVER_FAILURE}"' in expr


def test_counters_since_the_start_follow_each_series_through_a_restart():
    from seldon_market_ab.rollouts.figures import Counters

    def key(quantity, **labels):
        return ("candidate", quantity, json.dumps(labels, sort_keys=True))

    start = Counters({key("requests", code="OK"): 100.0, key("requests", code="Internal"): 10.0,
                      key("server_errors", code="Internal"): 10.0,
                      key("latency", le="0.01"): 90.0, key("latency", le="+Inf"): 110.0})
    now = Counters({key("requests", code="OK"): 130.0, key("requests", code="Internal"): 2.0,  # this one restarted
                    key("server_errors", code="Internal"): 2.0,
                    key("latency", le="0.01"): 95.0, key("latency", le="+Inf"): 3.0})  # restarted: from zero
    figures = now.since(start, "candidate")
    assert (figures.requests, figures.server_errors) == (32, 2)  # 30 more answered, and the restarted series' 2
    assert figures.latency == ((0.01, 5.0), (math.inf, 5.0))  # the count never falls along the buckets
    assert Counters.from_dict(json.loads(json.dumps(now.as_dict()))) == now
    failing = Counters({key("requests", code="OK"): 100.0, key("server_errors", code="Internal"): 120.0})
    assert failing.since(Counters({}), "candidate").server_errors == 100  # scraped apart: never above requests


def test_the_calibration_runs_its_scenarios_on_the_demos_traffic():
    from seldon_market_ab.rollouts import calibration

    report = Path(__file__).resolve().parents[2] / "docs/demo-report/report.json"
    results = calibration.run(report, runs=4, seed=0)
    rows = {row["name"]: row for row in results["rows"]}
    assert results["demo_requests"] > 0 and set(rows) == set(calibration.NAMES)
    assert rows["faulty"]["rolled_back"]["count"] == 4  # (the docs hold the 500-run figures)
    assert "| faulty (+30 ms, 10% failures) |" in calibration.render_markdown(results)


class ScriptedFigures:
    """Counters that make every gate pass: the start's, then enough requests and outcomes in both arms."""

    def __init__(self):
        self.looks = 0

    def counters(self):
        from seldon_market_ab.rollouts.figures import Counters

        scale, self.looks = self.looks, self.looks + 1
        series = {}
        for arm in ("baseline", "candidate"):
            for quantity, value in (("requests", 100), ("outcomes", 60), ("correct", 30)):
                series[(arm, quantity, "{}")] = float(value * scale)
            for le, count in (("0.01", 99), ("0.02", 100), ("+Inf", 100)):
                series[(arm, "latency", json.dumps({"le": le}))] = float(count * scale)
        return Counters(series)

    def scraped_after(self, moment):
        return True


class LateScrape(ScriptedFigures):
    """Prometheus scrapes the counters only on the third time it is asked; every query is recorded."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def scraped_after(self, moment):
        self.asked.append("scraped_after")
        return self.asked.count("scraped_after") >= 3

    def counters(self):
        self.asked.append("counters")
        return super().counters()


def test_a_rollout_counts_from_a_scrape_taken_after_it_began(tmp_path):
    """Requests the candidate answered just before the rollout (another experiment's) and Prometheus had not yet
    scraped must not count as the rollout's: the start counters wait for the next scrape."""
    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import RolloutRunner, Stop

    rollout = Rollout(apiVersion="market-ab.io/v1alpha1", kind="Rollout", metadata={"name": "r"},
                      spec=SPEC.model_copy(update={"interval": 0.01, "min_outcomes": 20}))
    figures, stop = LateScrape(), Stop()
    stop.set()
    RolloutRunner(rollout, Target(), AuditLog(tmp_path / "r.audit.jsonl"), figures, stop=stop).run()
    assert figures.asked[:4] == ["scraped_after", "scraped_after", "scraped_after", "counters"]


class Target:
    """Records every weight change; ``dies_at``: the candidate weight whose change kills the process."""

    def __init__(self, dies_at: int | None = None):
        self.calls, self.dies_at = [], dies_at

    def spec(self):
        return {"candidates": [{"name": "baseline", "weight": 100}, {"name": "enhanced", "weight": 0}]}

    def set_weights(self, weights, mirror=None):
        if weights["enhanced"] == self.dies_at:
            raise SystemExit("killed between the audit line and the weight change")
        self.calls.append(weights)
        self.mirrors = [*getattr(self, "mirrors", []), mirror]


def test_a_loop_killed_between_its_decision_and_the_weight_change_resumes_at_the_decided_step(tmp_path):
    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import RolloutRunner, Stop

    rollout = Rollout(apiVersion="market-ab.io/v1alpha1", kind="Rollout", metadata={"name": "r"},
                      spec=SPEC.model_copy(update={"interval": 0.01, "min_outcomes": 20}))
    audit = AuditLog(tmp_path / "r.audit.jsonl")
    first = Target(dies_at=25)
    with pytest.raises(SystemExit):
        RolloutRunner(rollout, first, audit, ScriptedFigures()).run()
    assert first.calls == [{"baseline": 90, "enhanced": 10}]  # the advance was logged, its weights never set
    assert audit.unfinished_run()[-1]["action"] == "advance"
    stop, second = Stop(), Target()
    stop.set()  # resume, then end at once
    final = RolloutRunner(rollout, second, audit, ScriptedFigures(), stop=stop).run()
    assert second.calls[0] == {"baseline": 75, "enhanced": 25}  # the step the log reached, not one further
    assert final["phase"] == "aborted" and second.calls[-1] == {"baseline": 100, "enhanced": 0}
    events = [r["event"] for r in audit.current_run()]
    assert events[0] == "start" and "resume" in events and events[-1] == "end"


def test_a_changed_document_does_not_resume_an_unfinished_run(tmp_path):
    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import ResumeError, RolloutRunner

    rollout = Rollout(apiVersion="market-ab.io/v1alpha1", kind="Rollout", metadata={"name": "r"},
                      spec=SPEC.model_copy(update={"interval": 0.01}))
    audit = AuditLog(tmp_path / "r.audit.jsonl")
    with pytest.raises(SystemExit):
        RolloutRunner(rollout, Target(dies_at=25), audit, ScriptedFigures()).run()
    edited = rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"steps": (5, 10)})})
    with pytest.raises(ResumeError, match="the document changed since its unfinished run began"):
        RolloutRunner(edited, Target(), audit, ScriptedFigures()).run()


def test_a_torn_last_line_is_skipped_and_the_next_one_kept(tmp_path):
    from seldon_market_ab.rollouts.audit import AuditLog

    audit = AuditLog(tmp_path / "a.jsonl")
    audit.append({"event": "start", "rollout": "r"})
    with open(audit.path, "a") as out:
        out.write('{"event": "decis')  # a crash in the middle of a line
    audit.append({"event": "end", "phase": "aborted"})
    assert [r["event"] for r in audit.current_run()] == ["start", "end"]


def test_the_mirror_phase_judges_copies_before_the_first_step():
    spec = SPEC.model_copy(update={"mirror": MirrorPhase(percent=50)})
    mirroring = c.Progress.begin(0.0, mirroring=True)
    early = c.decide(spec, mirroring, arm(500), arm(5), 2.0)
    assert early.action == c.HOLD and early.candidate_weight == 0 and early.progress.mirroring
    passed = c.decide(spec, mirroring, arm(500), arm(60), 4.0)
    assert passed.action == c.ADVANCE and passed.candidate_weight == 10 and not passed.progress.mirroring
    assert (passed.progress.step, passed.progress.step_started) == (0, 4.0)
    failed = c.decide(spec, mirroring, arm(500), arm(60, 12), 4.0)
    assert failed.action == c.ROLL_BACK and failed.progress.phase == c.ROLLED_BACK
    assert failed.reasons[0].startswith("error_rate (mirror phase):")


def test_a_mirror_phase_mirrors_the_candidate_then_gives_the_mirror_back(tmp_path):
    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import RolloutRunner, Stop

    class Mirrored(Target):
        def spec(self):
            return {**super().spec(), "mirror": {"name": "lightweight", "percent": 100}}

    rollout = Rollout(apiVersion="market-ab.io/v1alpha1", kind="Rollout", metadata={"name": "r"},
                      spec=SPEC.model_copy(update={"interval": 0.01, "mirror": MirrorPhase(percent=50)}))
    target, stop = Mirrored(dies_at=25), Stop()
    with pytest.raises(SystemExit):  # the mirror phase passes, the first step passes; stopped at the second
        RolloutRunner(rollout, target, AuditLog(tmp_path / "r.jsonl"), ScriptedFigures(), stop=stop).run()
    assert target.calls[:2] == [{"baseline": 100, "enhanced": 0}, {"baseline": 90, "enhanced": 10}]
    assert target.mirrors[:2] == [{"name": "enhanced", "percent": 50}, {"name": "lightweight", "percent": 100}]


def test_an_ended_rollout_is_not_run_again_and_another_ones_run_is_not_taken_over(tmp_path):
    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import ResumeError, RolloutRunner, Stop

    rollout = Rollout(apiVersion="market-ab.io/v1alpha1", kind="Rollout", metadata={"name": "r"},
                      spec=SPEC.model_copy(update={"interval": 0.01}))
    audit, stop = AuditLog(tmp_path / "r.jsonl"), Stop()
    stop.set()
    first = RolloutRunner(rollout, Target(), audit, ScriptedFigures(), stop=stop).run()
    again = Target()
    assert RolloutRunner(rollout, again, audit, ScriptedFigures()).run() == first and again.calls == []
    assert RolloutRunner(rollout, Target(), audit, ScriptedFigures(), stop=stop).run(restart=True)["phase"] == \
        "aborted"
    with pytest.raises(SystemExit):  # an unfinished run of r
        RolloutRunner(rollout, Target(dies_at=25), audit, ScriptedFigures()).run(restart=True)
    other = rollout.model_copy(update={"metadata": rollout.metadata.model_copy(update={"name": "other"})})
    with pytest.raises(ResumeError, match="holds an unfinished run of rollout 'r'"):
        RolloutRunner(other, Target(), audit, ScriptedFigures()).run()


def test_a_step_whose_weights_did_not_move_is_moved_at_the_next_look(tmp_path):
    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import RolloutRunner, Stop
    from seldon_market_ab.rollouts.targets import TargetError

    class Flaky(Target):
        """Refuses the first move to 25%, then reports the weights it really has."""

        def __init__(self):
            super().__init__()
            self.refused, self.current = False, {"baseline": 100, "enhanced": 0}

        def spec(self):
            return {"candidates": [{"name": n, "weight": w} for n, w in self.current.items()]}

        def set_weights(self, weights, mirror=None):
            if weights["enhanced"] == 25 and not self.refused:
                self.refused = True
                raise TargetError("503 the admin port is restarting")
            super().set_weights(weights, mirror)
            self.current = dict(weights)
            if weights["enhanced"] == 25:
                stop.set()  # seen moved: end the run

    class Still(ScriptedFigures):
        """After the first look nothing new comes in: the second step holds, and its look finds the weights."""

        def counters(self):
            self.looks = min(self.looks, 1)
            return super().counters()

    rollout = Rollout(apiVersion="market-ab.io/v1alpha1", kind="Rollout", metadata={"name": "r"},
                      spec=SPEC.model_copy(update={"interval": 0.01}))
    stop, target = Stop(), Flaky()
    final = RolloutRunner(rollout, target, AuditLog(tmp_path / "r.jsonl"), Still(), stop=stop).run()
    assert target.refused and {"baseline": 75, "enhanced": 25} in target.calls and final["phase"] == "aborted"


def test_the_split_check_with_a_single_possible_arm_is_not_a_test():
    from seldon_market_ab.analysis.ab_analysis import sample_ratio_mismatch_over_time

    result = sample_ratio_mismatch_over_time(["a"] * 50, [{"a": 1.0, "b": 0.0}] * 50)
    assert result["p_value"] == 1.0 and not result["mismatch"]


def test_webhooks_hear_each_move_once(tmp_path):
    """A real HTTP receiver: the run's start, the advance, and the abort, each once, as JSON; a hook that asked for
    some events only hears those."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from seldon_market_ab.rollouts.audit import AuditLog
    from seldon_market_ab.rollouts.runner import RolloutRunner, Stop

    heard: list[tuple[str, dict]] = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            heard.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    class StopsAfterTheAdvance(Target):
        def set_weights(self, weights, mirror=None):
            super().set_weights(weights, mirror)
            if weights["enhanced"] == 25:
                stop.set()

    stop = Stop()
    rollout = Rollout.model_validate({
        "apiVersion": "market-ab.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"},
        "spec": {**SPEC.model_dump(by_alias=True, mode="json"), "interval": 0.01,
                 "webhooks": [{"name": "all", "url": f"{url}/all"},
                              {"name": "moves", "url": f"{url}/moves", "events": ["advance", "rollback"]}]}})
    RolloutRunner(rollout, StopsAfterTheAdvance(), AuditLog(tmp_path / "r.jsonl"), ScriptedFigures(), stop=stop).run()
    server.shutdown()
    assert [(path, body["event"]) for path, body in heard] == [("/all", "start"), ("/all", "advance"),
                                                               ("/moves", "advance"), ("/all", "abort")]
    assert heard[1][1]["weights"] == {"baseline": 75, "enhanced": 25} and heard[1][1]["rollout"] == "r"
