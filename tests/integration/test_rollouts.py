"""``market-ab rollout run`` against a running ``market-ab serve`` with its real Prometheus: the faulty candidate is
rolled back and gets nothing afterwards; a healthy candidate walks through every step in order (each step's
observed split matches its weight) and is promoted; a loop killed with SIGKILL resumes at the step it reached.

Traffic is a client thread through the experiment. The outcomes it reports are drawn by the test (the candidate
more often right than the baseline): what is tested is the loop, not the market."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from seldon_market_ab.analysis.ab_analysis import sample_ratio_mismatch
from seldon_market_ab.cli.demo import demo_repository
from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.serve_process import ServeProcess
from seldon_market_ab.rollouts.audit import AuditLog
from seldon_market_ab.rollouts.targets import LocalAdmin, candidate_weights
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MARKET_AB, MIN_WINDOW, MODELS

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = [
    {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": {"name": name},
     "spec": {"candidates": [{"name": "baseline", "weight": 100}, {"name": candidate, "weight": 0}]}}
    for name, candidate in (("fault-canary", "faulty"), ("copy-canary", "baseline-copy"))]
ACCURACY = {"baseline": 0.5, "baseline-copy": 0.9, "faulty": 0.5}  # what the test's outcomes say


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rollouts")
    repository = demo_repository(MODELS, folder / "models", seed=0, only={"baseline", "outcomes"})
    manifest = folder / "canaries.yaml"
    manifest.write_text(yaml.safe_dump_all(EXPERIMENTS))
    with ServeProcess(repository, [manifest], seed=0, log_path=folder / "serve.log", prometheus=True,
                      extra_args=["--scrape-interval", "1s"]) as serve:
        yield serve


class Traffic:
    """One client sending requests through an experiment and reporting each answer's outcome; every request's
    (sent, answered, model or None when it failed) in ``log``."""

    def __init__(self, serve: ServeProcess, experiment: str, seed: int = 0):
        self.serve, self.experiment = serve, experiment
        self.window = ohlcv_windows("sp500", [4200], MIN_WINDOW).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.log: list[tuple[float, float, str | None]] = []
        self.answered = threading.Condition()  # notified after each request
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        client = InferenceClient(self.serve.grpc_address, retries=0)
        pending: list[tuple[str, str]] = []
        while not self.stop.is_set():
            request_id, sent = uuid.uuid4().hex, time.time()
            try:
                answer = client.infer(f"{self.experiment}.experiment", {"ohlcv": self.window}, request_id=request_id)
            except grpc.RpcError as error:
                assert "injected fault" in error.details(), error.details()
                self._record(sent, None)
                continue
            model = answer.route.strip(":").rsplit("_", 1)[0]
            self._record(sent, model)
            pending.append((request_id, model))
            if len(pending) >= 10:
                ids, models = zip(*pending, strict=True)
                correct = [bool(self.rng.random() < ACCURACY[m]) for m in models]
                assert set(client.send_outcomes(list(ids), list(models), correct)) == {"recorded"}
                pending = []
        client.close()

    def _record(self, sent: float, model: str | None) -> None:
        with self.answered:
            self.log.append((sent, time.time(), model))
            self.answered.notify_all()

    def wait_for_requests_after(self, moment: float, count: int) -> None:
        with self.answered:
            assert self.answered.wait_for(lambda: sum(1 for sent, _, _ in self.log if sent > moment) >= count, 60)


def rollout_file(folder: Path, serve: ServeProcess, name: str, experiment: str, candidate: str,
                 steps: list[int], **more) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "market-ab.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
        "spec": {"experiment": experiment, "baseline": "baseline", "candidate": candidate, "steps": steps,
                 "interval": "1s", "minOutcomes": 20, "gates": {"minRequests": 20}, "maxDuration": "3m",
                 "prometheus": serve.prometheus_url, **more}}))
    return path


def command(path: Path, serve: ServeProcess) -> list[str]:
    return [*MARKET_AB, "rollout", "run", str(path), "--admin", serve.admin_url]


def run_rollout(path: Path, serve: ServeProcess) -> tuple[int, dict, str]:
    done = subprocess.run(command(path, serve), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.stdout.strip(), f"exit {done.returncode} without a final line:\n{done.stderr}"
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_faulty_candidate_is_rolled_back_and_then_gets_nothing(stack, tmp_path):
    path = rollout_file(tmp_path, stack, "faulty", "fault-canary", "faulty", [20, 50, 80])
    with Traffic(stack, "fault-canary") as traffic:
        code, final, log = run_rollout(path, stack)
        assert code == 1 and final["phase"] == "rolled_back", log
        assert any(reason.startswith(("error_rate:", "latency:")) for reason in final["reasons"]), final
        stopped = time.time()
        traffic.wait_for_requests_after(stopped, 50)
    after = [model for sent, _, model in traffic.log if sent > stopped]
    assert after.count("baseline") == len(after), "the rolled back candidate still answered"
    assert candidate_weights(LocalAdmin("fault-canary", stack.admin_url).spec()) == {"baseline": 100, "faulty": 0}
    to_faulty = sum(1 for _, _, model in traffic.log if model in ("faulty", None))  # only the faulty one fails
    assert final["candidate_requests"] == to_faulty
    run = AuditLog(path.with_suffix(".audit.jsonl")).current_run()
    assert [r["event"] for r in run][0] == "start" and run[-1]["event"] == "end"
    rolled = next(r for r in run if r.get("action") == "roll_back")
    assert {g["name"]: g["verdict"] for g in rolled["gates"]}.keys() == {"error_rate", "latency", "accuracy"}
    assert all(sum(r["weights"].values()) == 100 for r in run if "weights" in r)


def test_a_mirror_phase_stops_the_faulty_candidate_before_any_client_sees_it(stack, tmp_path):
    path = rollout_file(tmp_path, stack, "mirrored", "fault-canary", "faulty", [20, 50, 80], mirror={"percent": 100})
    with Traffic(stack, "fault-canary", seed=3) as traffic:
        code, final, log = run_rollout(path, stack)
    assert code == 1 and final["phase"] == "rolled_back", log
    assert all("(mirror phase)" in reason for reason in final["reasons"]), final
    assert [model for _, _, model in traffic.log if model != "baseline"] == []  # no client met the candidate
    assert final["candidate_requests"] > 0  # the copies it was judged on
    spec = LocalAdmin("fault-canary", stack.admin_url).spec()
    assert "mirror" not in spec and candidate_weights(spec) == {"baseline": 100, "faulty": 0}


def test_a_healthy_candidate_walks_every_step_in_order_and_is_promoted(stack, tmp_path):
    steps = [20, 50, 80]
    path = rollout_file(tmp_path, stack, "copy", "copy-canary", "baseline-copy", steps)
    with Traffic(stack, "copy-canary", seed=1) as traffic:
        code, final, log = run_rollout(path, stack)
    assert code == 0 and final["phase"] == "promoted", log
    assert candidate_weights(LocalAdmin("copy-canary", stack.admin_url).spec())["baseline-copy"] == 100
    run = AuditLog(path.with_suffix(".audit.jsonl")).current_run()
    applied = [r for r in run if r["event"] == "weights"]  # written once each change was acknowledged
    weights = [a["weights"]["baseline-copy"] for a in applied]
    assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [*steps, 100]
    moved = [r for r in run if r.get("action") in ("advance", "promote")]  # written before the next change
    for change, next_decision in zip(applied, moved, strict=False):  # each step's split, between the two
        begin = datetime.datetime.fromisoformat(change["time"]).timestamp()
        end = datetime.datetime.fromisoformat(next_decision["time"]).timestamp()
        served = [model for sent, answered, model in traffic.log if begin <= sent and answered <= end]
        counts = {"baseline": served.count("baseline"), "baseline-copy": served.count("baseline-copy")}
        weight = change["weights"]["baseline-copy"]
        srm = sample_ratio_mismatch(counts, {"baseline": 100 - weight, "baseline-copy": weight})
        assert not srm["mismatch"], (weight, counts, srm)


def test_a_killed_loop_resumes_at_the_step_it_reached(stack, tmp_path):
    path = rollout_file(tmp_path, stack, "resumed", "copy-canary", "baseline-copy", [10, 30, 60])
    admin = LocalAdmin("copy-canary", stack.admin_url)
    admin.set_weights({"baseline": 100, "baseline-copy": 0})
    with Traffic(stack, "copy-canary", seed=2):
        loop = subprocess.Popen(command(path, stack), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=REPO)
        for line in loop.stderr:  # its log, line by line, until it advances to the second step
            if "-> advance" in line:
                break
        os.kill(loop.pid, signal.SIGKILL)
        loop.wait(60)
        audit = AuditLog(path.with_suffix(".audit.jsonl"))
        decided = next(r for r in reversed(audit.unfinished_run()) if "progress" in r)
        reached = candidate_weights(admin.spec())["baseline-copy"]
        assert decided["step"] >= 2 and reached <= decided["weights"]["baseline-copy"]  # never ahead of the log
        again = subprocess.Popen(command(path, stack), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=REPO)
        first = again.stderr.readline()
        stdout, stderr = again.communicate(timeout=300)
    step, weight = decided["step"], decided["weights"]["baseline-copy"]
    assert first.startswith(f"resumed: resuming at step {step}/3 (candidate {weight}%)"), first
    assert json.loads(stdout.strip().splitlines()[-1])["phase"] == "promoted", stderr
    run = audit.current_run()
    events = [r["event"] for r in run]
    assert events[0] == "start" and "resume" in events and events[-1] == "end"
    weights = [r["weights"]["baseline-copy"] for r in run if r["event"] == "weights"]
    assert weights == sorted(weights), weights  # never a step back


def test_run_moves_an_experiment_resource_through_the_kubernetes_api(stack, tmp_path):
    """`market-ab rollout run FILE --kubernetes` against a fake API server (no cluster runs here; see
    tests/fake_kubernetes.py), its figures from the stack's real Prometheus: it patches the first step's weights,
    holds without traffic, and a SIGTERM ends it aborted with the baseline back at 100."""
    from ..fake_kubernetes import FakeKubernetes, experiment

    namespace = "seldon-market-ab"
    objects = {(namespace, "copy-canary"): experiment("copy-canary", namespace, {"baseline": 100,
                                                                                 "baseline-copy": 0})}
    path = rollout_file(tmp_path, stack, "on-a-cluster", "copy-canary", "baseline-copy", [10, 30, 60])
    with FakeKubernetes(objects) as kube:
        env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig", namespace))}
        loop = subprocess.Popen([*MARKET_AB, "rollout", "run", str(path), "--kubernetes"],
                                stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        for line in loop.stderr:  # until its first look
            if "-> hold" in line:
                break
        loop.send_signal(signal.SIGTERM)
        stdout, stderr = loop.communicate(timeout=120)
        assert loop.returncode == 1 and json.loads(stdout)["phase"] == "aborted", stderr
        weights = [p["spec"]["candidates"][1]["weight"] for p in kube.patches]
        assert weights[0] == 10 and weights[-1] == 0, weights
        assert candidate_weights(kube.objects[(namespace, "copy-canary")]["spec"]) == {"baseline": 100,
                                                                                       "baseline-copy": 0}
