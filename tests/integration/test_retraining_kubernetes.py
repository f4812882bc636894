"""`market-ab retrain --kubernetes` and the cluster's retraining trigger, against a fake API server: no cluster runs
here, so ``tests/fake_kubernetes.py`` stands in for one, over real HTTP, through the official ``kubernetes`` client
(creates with 409 AlreadyExists, merge patches at a resourceVersion, lists by label, Role-like permissions; no
controller: a test plays Seldon's scheduler and the Job controller by setting ``status``). And the manifests of
``manifests/retraining``, rendered by ``kubectl kustomize``: the Job template against what the code expects, the
Roles against the calls the code made."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

from seldon_market_ab.cli.commands import build_parser
from seldon_market_ab.retraining.commands import LEDGER, OUTCOMES_ARMS, RetrainMetrics, run_retraining
from seldon_market_ab.retraining.job_trigger import JobTrigger
from seldon_market_ab.retraining.stack import KubernetesStack
from seldon_market_ab.retraining.templates import DEFAULT_TEMPLATE, render
from seldon_market_ab.rollouts.kubernetes_target import KubernetesExperiment
from seldon_market_ab.rollouts.runner import Stop
from seldon_market_ab.rollouts.targets import TargetError, candidate_weights

from ..conftest import MARKET_AB
from ..fake_kubernetes import READY, FakeKubernetes, experiment, model

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests" / "retraining"
NAMESPACE = "seldon-market-ab"
JOB_TEMPLATE = yaml.safe_load((MANIFESTS / "job.yaml").read_text())
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the Kustomize folders")


def api_client(kube: FakeKubernetes, folder: Path, token: str | None = None):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(kube.kubeconfig(folder / "kubeconfig", NAMESPACE, *([token] if token else []))),
                            client_configuration=configuration)
    return client.ApiClient(configuration)


def custom(kube, folder, token=None):
    from kubernetes import client

    return client.CustomObjectsApi(api_client(kube, folder, token))


def batch(kube, folder, token=None):
    from kubernetes import client

    return client.BatchV1Api(api_client(kube, folder, token))


def documents(version: int):
    return render(DEFAULT_TEMPLATE.read_text(), "enhanced", version, "http://prometheus:9090")


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self, on_sleep=None):
        self.now, self.sleeps, self.on_sleep = 0.0, 0, on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.on_sleep:
            self.on_sleep(self.sleeps)


# KubernetesStack ---------------------------------------------------------------------------------------------------

def test_the_stack_creates_then_finds_the_same_documents_unchanged(tmp_path):
    with FakeKubernetes(ready_models=True) as kube:
        stack = KubernetesStack(NAMESPACE, custom(kube, tmp_path))
        docs = documents(2)
        assert [stack.apply(d) for d in (docs.model, docs.experiment)] == ["created", "created"]
        stored = kube.models[(NAMESPACE, "enhanced-v2")]
        assert stored["spec"] == docs.model["spec"] and stored["metadata"]["namespace"] == NAMESPACE
        assert kube.objects[(NAMESPACE, "enhanced-retrain")]["spec"] == docs.experiment["spec"]
        assert [stack.apply(d) for d in (docs.model, docs.experiment)] == ["unchanged", "unchanged"]
        assert kube.patches == []


def test_a_served_model_is_not_replaced_by_another_spec(tmp_path):
    other = model("enhanced-v2", NAMESPACE, **{**documents(2).model["spec"], "storageUri": "gs://elsewhere/enhanced"})
    with FakeKubernetes(models={(NAMESPACE, "enhanced-v2"): other}) as kube:
        stack = KubernetesStack(NAMESPACE, custom(kube, tmp_path))
        with pytest.raises(TargetError, match="Model/enhanced-v2 exists with another storageUri: a served Model is "
                                              "not replaced"):
            stack.apply(documents(2).model)
        assert kube.models[(NAMESPACE, "enhanced-v2")]["spec"] == other["spec"] and kube.patches == []


def test_the_experiment_is_taken_over_by_the_next_version_and_kept_on_a_resumed_run(tmp_path):
    current = experiment("enhanced-retrain", NAMESPACE, {"enhanced": 50, "enhanced-v2": 50}, default="enhanced",
                         mirror={"name": "lightweight", "percent": 100})
    with FakeKubernetes({(NAMESPACE, "enhanced-retrain"): current}) as kube:
        stack = KubernetesStack(NAMESPACE, custom(kube, tmp_path))
        assert stack.apply(documents(2).experiment) == "unchanged"  # v2's rollout resumed: its weights stand
        assert candidate_weights(kube.objects[(NAMESPACE, "enhanced-retrain")]["spec"]) == {"enhanced": 50,
                                                                                           "enhanced-v2": 50}
        assert stack.apply(documents(3).experiment) == "updated"
        assert kube.objects[(NAMESPACE, "enhanced-retrain")]["spec"] == documents(3).experiment["spec"]  # mirror gone
        (patch,) = kube.patches
        assert patch["metadata"] == {"resourceVersion": "1"} and patch["spec"]["mirror"] is None


def test_a_model_is_waited_for_until_seldon_reports_it_ready(tmp_path):
    with FakeKubernetes() as kube:
        def scheduler(sleeps):  # Seldon's scheduler reports the Model loaded after the third look
            if sleeps == 3:
                kube.models[(NAMESPACE, "enhanced-v2")]["status"] = {"conditions": list(READY)}

        clock, said = Clock(scheduler), []
        stack = KubernetesStack(NAMESPACE, custom(kube, tmp_path), clock=clock, sleep=clock.sleep, say=said.append)
        assert stack.apply(documents(2).model) == "created"
        assert clock.sleeps == 3 and said == ["Model/enhanced-v2: waiting for Seldon to report it Ready (at most "
                                              "300 s)"]


def test_a_model_never_ready_fails_after_the_timeout(tmp_path):
    with FakeKubernetes() as kube:
        clock = Clock()
        stack = KubernetesStack(NAMESPACE, custom(kube, tmp_path), clock=clock, sleep=clock.sleep)
        kube.models[(NAMESPACE, "enhanced-v2")] = {**documents(2).model, "metadata": {
            "name": "enhanced-v2", "namespace": NAMESPACE, "resourceVersion": "1"}, "status": {"conditions": [
                {"type": "Ready", "status": "False", "message": "ScheduleFailed: no server for mlserver"}]}}
        with pytest.raises(TargetError, match=r"not Ready after 300 s \(ScheduleFailed: no server"):
            stack.apply(documents(2).model)
        assert clock.now >= 300


@pytest.mark.parametrize("token, expected", [
    ("denied", "create models/enhanced-v2 in namespace seldon-market-ab: 403 forbidden: the ServiceAccount needs "
               "create, get and patch on models and experiments.mlops.seldon.io in namespace seldon-market-ab "
               r"\(manifests/retraining/role.yaml\)"),
    ("wrong", "401 not authenticated"),
])
def test_refusals_name_the_rbac_needed(tmp_path, token, expected):
    with FakeKubernetes() as kube:
        with pytest.raises(TargetError, match=expected):
            KubernetesStack(NAMESPACE, custom(kube, tmp_path, token)).apply(documents(2).model)
        assert kube.models == {}


def test_the_outcomes_model_is_told_to_count_the_new_version(tmp_path):
    from seldon_market_ab.routers.outcomes import LSTM_MODELS

    assert OUTCOMES_ARMS == LSTM_MODELS  # the runtime's default arms, which a Model without `arms` counts
    outcomes = model("outcomes", NAMESPACE, parameters=[{"name": "ttl_seconds", "value": "604800"},
                                                        {"name": "store", "value": "redis://redis:6379/0"}])
    with FakeKubernetes(models={(NAMESPACE, "outcomes"): outcomes}) as kube:
        stack = KubernetesStack(NAMESPACE, custom(kube, tmp_path))
        assert stack.add_arm("outcomes", "enhanced-v2", OUTCOMES_ARMS) == ("added", [*LSTM_MODELS, "enhanced-v2"])
        parameters = kube.models[(NAMESPACE, "outcomes")]["spec"]["parameters"]
        assert parameters[:2] == outcomes["spec"]["parameters"]  # its other parameters kept
        assert parameters[2] == {"name": "arms", "value": ",".join([*LSTM_MODELS, "enhanced-v2"])}
        assert stack.add_arm("outcomes", "enhanced-v2", OUTCOMES_ARMS)[0] == "unchanged"
        assert stack.add_arm("outcomes", "enhanced-v3", OUTCOMES_ARMS)[1][-2:] == ["enhanced-v2", "enhanced-v3"]
        assert stack.add_arm("nope", "enhanced-v2", OUTCOMES_ARMS) == ("absent", [])
        assert [p["metadata"]["resourceVersion"] for p in kube.patches] == ["1", "2"]


# market-ab retrain --kubernetes ------------------------------------------------------------------------------------

def registered_ledger(state: Path, alert: str) -> None:
    """A run stopped after ``registered``: the retraining resumes from here without training (what this test needs
    of it; the training itself is tests/integration/test_retraining.py's)."""
    state.mkdir(parents=True)
    difference = {"difference": 0.01, "ci": [-0.02, 0.04], "n": 252}
    comparison = {"new": {"accuracy": 0.53}, "serving": {"accuracy": 0.52}, "difference": difference,
                  "days": {"first": "2018-07-02", "last": "2018-12-31"}}
    (state / LEDGER).write_text(json.dumps({"event": "registered", "alert": alert, "version": 2, "comparison":
                                            comparison, "folder": "/mnt/models/enhanced/versions/2"}) + "\n")


def retrain_on_the_fake(kube, tmp_path, monkeypatch, alert="drift@1") -> tuple[dict, list]:
    """`market-ab retrain enhanced --kubernetes` with the kubeconfig of the fake; the rollout's loop is replaced by
    one step through the target it is given (its decisions are tests/unit/test_rollout_decisions.py's)."""
    import seldon_market_ab.retraining.commands as commands

    targets = []

    class OneStep:
        def __init__(self, rollout, target, audit, metrics, stop):
            targets.append(target)

        def run(self):
            targets[-1].set_weights({"enhanced": 90, "enhanced-v2": 10})
            return {"phase": "promoted", "reasons": ["one step, for the test"]}

    monkeypatch.setattr(commands, "RolloutRunner", OneStep)
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig", NAMESPACE)))
    registered_ledger(tmp_path / "state", alert)
    args = build_parser().parse_args(["retrain", "enhanced", "--kubernetes", "--namespace", NAMESPACE, "--alert",
                                      alert, "--state-dir", str(tmp_path / "state"), "--prometheus",
                                      "http://prometheus:9090"])
    return run_retraining(args, RetrainMetrics(), Stop()), targets


def test_retrain_kubernetes_applies_counts_and_rolls_out_on_the_experiment_resource(tmp_path, monkeypatch, capsys):
    outcomes = model("outcomes", NAMESPACE, parameters=[{"name": "ttl_seconds", "value": "604800"}])
    with FakeKubernetes(models={(NAMESPACE, "outcomes"): outcomes}, ready_models=True) as kube:
        final, (target,) = retrain_on_the_fake(kube, tmp_path, monkeypatch)
        assert final["result"] == "promoted"
        assert isinstance(target, KubernetesExperiment) and target.namespace == NAMESPACE
        assert (NAMESPACE, "enhanced-v2") in kube.models
        assert candidate_weights(kube.objects[(NAMESPACE, "enhanced-retrain")]["spec"]) == {"enhanced": 90,
                                                                                           "enhanced-v2": 10}
        arms = kube.models[(NAMESPACE, "outcomes")]["spec"]["parameters"][-1]
        assert arms == {"name": "arms", "value": ",".join([*OUTCOMES_ARMS, "enhanced-v2"])}
    log = capsys.readouterr().err
    assert "Model/enhanced-v2: created" in log and "Experiment/enhanced-retrain: created" in log
    assert "Model/outcomes: enhanced-v2 added to its arms" in log
    applied = [json.loads(line) for line in (tmp_path / "state" / LEDGER).read_text().splitlines()][-2]
    assert applied["event"] == "applied" and applied["outcomes_arms"][-1] == "enhanced-v2"


def test_without_an_outcomes_model_the_log_says_so(tmp_path, monkeypatch, capsys):
    with FakeKubernetes(ready_models=True) as kube:
        assert retrain_on_the_fake(kube, tmp_path, monkeypatch)[0]["result"] == "promoted"
    assert "Model/outcomes: not in namespace seldon-market-ab" in capsys.readouterr().err


# the trigger: one Job per alert, one at a time ---------------------------------------------------------------------

def finished(job: dict, condition: str = "Complete") -> None:
    job["status"] = {"conditions": [{"type": condition, "status": "True"}]}  # as the Job controller sets it


def test_each_alert_gets_one_job_and_a_repeat_none(tmp_path):
    with FakeKubernetes() as kube:
        trigger = JobTrigger(JOB_TEMPLATE, NAMESPACE, batch(kube, tmp_path))
        assert trigger({"key": "abc@2026-12-07T06:00:00Z"}) == "created"
        name = "market-ab-retrain-" + __import__("hashlib").sha256(b"abc@2026-12-07T06:00:00Z").hexdigest()[:10]
        job = kube.jobs[(NAMESPACE, name)]
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args == [*JOB_TEMPLATE["spec"]["template"]["spec"]["containers"][0]["args"], "--alert",
                        "abc@2026-12-07T06:00:00Z"]
        assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "market-ab-retrain"
        finished(job)
        assert trigger({"key": "abc@2026-12-07T06:00:00Z"}) == "exists"
        assert trigger({"key": "def@2026-12-08T06:00:00Z"}) == "created"  # the first one ended
        assert len(kube.jobs) == 2


def test_a_second_alert_while_a_job_runs_starts_nothing(tmp_path, caplog):
    with FakeKubernetes() as kube:
        trigger = JobTrigger(JOB_TEMPLATE, NAMESPACE, batch(kube, tmp_path))
        assert trigger({"key": "abc@1"}) == "created"  # no status yet: not finished, so it runs
        with caplog.at_level(logging.WARNING):
            assert trigger({"key": "def@2"}) == "skipped"
        assert "starts nothing: Job market-ab-retrain-" in caplog.text and len(kube.jobs) == 1
        finished(next(iter(kube.jobs.values())), "Failed")
        assert trigger({"key": "ghi@3"}) == "created"


def test_a_job_of_the_alerts_name_created_meanwhile_is_its_job(tmp_path):
    """A create answered 409 AlreadyExists: the alert has its Job (created by a receiver that lost its records, or
    without the label); it is read, not replaced."""
    with FakeKubernetes() as kube:
        trigger = JobTrigger(JOB_TEMPLATE, NAMESPACE, batch(kube, tmp_path))
        job = trigger.job_for("abc@1")
        del job["metadata"]["labels"]
        kube.jobs[(NAMESPACE, job["metadata"]["name"])] = {**job, "status": {}}
        assert trigger({"key": "abc@1"}) == "exists"
        assert ("create", "jobs.batch") in kube.calls and ("get", "jobs.batch") in kube.calls


def test_a_forbidden_receiver_names_the_rbac_it_needs(tmp_path, caplog):
    with FakeKubernetes() as kube, caplog.at_level(logging.ERROR):
        assert JobTrigger(JOB_TEMPLATE, NAMESPACE, batch(kube, tmp_path, "denied"))({"key": "abc@1"}) == "failed"
    assert "403 forbidden: the receiver's ServiceAccount needs create, get and list on jobs.batch" in caplog.text


def test_a_template_that_is_no_job_is_refused_at_start():
    with pytest.raises(ValueError, match="expected a batch/v1 Job"):
        JobTrigger({"apiVersion": "v1", "kind": "Pod"}, NAMESPACE, api=object())


def test_the_receiver_creates_the_jobs_as_on_a_cluster(tmp_path):
    """`market-ab alerts receive --retrain-job FILE`, as the Deployment runs it, with a kubeconfig: two alerts at once
    create one Job; the other request starts nothing."""
    from seldon_market_ab.local_seldon.mlserver_process import free_port

    from .test_alerting import alert, payload

    with FakeKubernetes() as kube:
        env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig", NAMESPACE))}
        port = free_port()
        process = subprocess.Popen([*MARKET_AB, "alerts", "receive", "--port", str(port),
                                    "--dir", str(tmp_path / "alerts"), "--retrain-job", str(MANIFESTS / "job.yaml")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        watchdog = threading.Timer(90, process.kill)  # a hung receiver fails the test instead of holding it
        watchdog.start()
        try:
            line = process.stdout.readline()  # printed once its port is bound
            assert f"creates a Job from {MANIFESTS / 'job.yaml'} in namespace {NAMESPACE}" in line, line
            alerts = [alert(starts="2026-12-07T06:00:00Z"), alert(starts="2026-12-07T07:00:00Z")]  # two episodes
            body = json.dumps(payload(*alerts)).encode()
            posted = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/alerts/retrain", body,
                                                                   method="POST"), timeout=10)
            assert len(json.loads(posted.read())["new_requests"]) == 2
            logged = []
            while not (any("created in namespace" in x for x in logged) and any("starts nothing" in x for x in logged)):
                logged.append(process.stderr.readline())  # the trigger's lines, as they come
                assert logged[-1] and "no Job created" not in logged[-1], "".join(logged)
        finally:
            watchdog.cancel()
            process.terminate()
            process.wait(30)
        assert len(kube.jobs) == 1 and [v for v, _ in kube.calls].count("list") == 2


# the manifests -----------------------------------------------------------------------------------------------------

def rendered(folder: Path) -> dict[tuple[str, str], dict]:
    from seldon_market_ab.local_seldon.manifests import (
        load_all,  # as Kubernetes reads YAML (`matchType: =` is a string)
    )

    text = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in load_all(text) if d}


def round_trip(document: dict, kind: str) -> dict:
    """The document through the official client's model of ``kind`` (generated from Kubernetes's OpenAPI schema):
    a misspelt or misplaced field is dropped on the way, so the two differ."""
    from kubernetes import client

    api = client.ApiClient()
    answer = type("Answer", (), {"data": json.dumps(document)})()
    return api.sanitize_for_serialization(api.deserialize(answer, kind))


def grants(role: dict) -> set[tuple[str, str]]:
    return {(f"{resource}.{group}", verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@needs_kubectl
def test_the_roles_grant_exactly_the_calls_the_code_makes(tmp_path, monkeypatch):
    """Each Role, given to the fake as its only permissions: the code's flows pass, and every verb granted was used."""
    documents_ = rendered(MANIFESTS)
    retrain, receiver = (grants(documents_[("Role", name)]) for name in ("market-ab-retrain", "market-ab-alerts"))
    assert retrain == {(f"{r}.mlops.seldon.io", v) for r in ("models", "experiments") for v in ("create", "get",
                                                                                                 "patch")}
    assert receiver == {("jobs.batch", v) for v in ("create", "get", "list")}
    for binding, account in (("market-ab-retrain", "market-ab-retrain"), ("market-ab-alerts", "market-ab-alerts")):
        assert documents_[("RoleBinding", binding)]["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
        assert ("ServiceAccount", account) in documents_
    outcomes = model("outcomes", NAMESPACE)
    taken = experiment("enhanced-retrain", NAMESPACE, {"enhanced": 100, "enhanced-v1": 0}, default="enhanced")
    with FakeKubernetes({(NAMESPACE, "enhanced-retrain"): taken}, models={(NAMESPACE, "outcomes"): outcomes},
                        ready_models=True, allowed=retrain) as kube:
        assert retrain_on_the_fake(kube, tmp_path, monkeypatch)[0]["result"] == "promoted"
        assert {(resource, verb) for verb, resource in kube.calls} == retrain
    with FakeKubernetes(allowed=receiver) as kube:
        trigger = JobTrigger(JOB_TEMPLATE, NAMESPACE, batch(kube, tmp_path))
        taken_name = trigger.job_for("abc@1")
        del taken_name["metadata"]["labels"]
        kube.jobs[(NAMESPACE, taken_name["metadata"]["name"])] = taken_name
        assert [trigger({"key": key}) for key in ("new@1", "abc@1")] == ["created", "skipped"]
        finished(kube.jobs[(NAMESPACE, JobTrigger.job_name("new@1"))])
        assert trigger({"key": "abc@1"}) == "exists"  # its name taken: 409, then read
        assert {(resource, verb) for verb, resource in kube.calls} == receiver


@needs_kubectl
def test_the_job_template_is_what_the_code_expects():
    documents_ = rendered(MANIFESTS)
    assert not any(kind == "Job" for kind, _ in documents_)  # a template: nothing runs until an alert asks
    job = yaml.safe_load(documents_[("ConfigMap", "market-ab-retrain-job")]["data"]["job.yaml"])
    assert job == JOB_TEMPLATE and round_trip(job, "V1Job") == job
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"  # what podFailurePolicy needs
    rules = job["spec"]["podFailurePolicy"]["rules"]  # an ended or unstartable retraining is not run again
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"] == {
        "containerName": container["name"], "operator": "In", "values": [1, 2]}
    assert pod["terminationGracePeriodSeconds"] >= 120  # SIGTERM's abort sets the weights and waits for two scrapes
    assert job["metadata"]["labels"][JobTrigger.LABEL] == JobTrigger.NAME  # what one-at-a-time lists
    assert pod["serviceAccountName"] == "market-ab-retrain"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}

    args = build_parser().parse_args(container["args"])
    assert container["command"] == ["market-ab"] and container["args"][0] == "retrain"
    assert args.kubernetes and args.variant == "enhanced" and not args.no_rollout
    assert args.prometheus == "http://prometheus-operated.monitoring:9090"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def volume(path: Path) -> dict:
        (mount,) = [m for m in mounts if path == Path(m) or Path(m) in path.parents]
        return volumes[mounts[mount]]

    state = volume(args.state_dir)["persistentVolumeClaim"]["claimName"]
    assert documents_[("PersistentVolumeClaim", state)]["spec"]["accessModes"] == ["ReadWriteOnce"]
    templates = volume(args.template)["configMap"]["name"]
    assert args.template.name in documents_[("ConfigMap", templates)]["data"]
    render(documents_[("ConfigMap", templates)]["data"][args.template.name], args.variant, 2, args.prometheus)
    # the version folder the Job writes is the one the rendered Model's storageUri names
    models = volume(args.models_dir)["csi"]
    assert models["driver"] == "gcsfuse.csi.storage.gke.io"
    options = dict(o.partition("=")[::2] for o in models["volumeAttributes"]["mountOptions"].split(","))
    storage = documents(2).model["spec"]["storageUri"]
    assert storage == f"gs://{models['volumeAttributes']['bucketName']}/{options['only-dir']}/enhanced/versions"
    assert int(options["rename-dir-limit"]) > 0  # the registry renames its staging folder into place
    assert options["uid"] == str(pod["securityContext"]["runAsUser"])
    assert job["spec"]["template"]["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    monitor = documents_[("PodMonitor", "market-ab-retrain")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert args.metrics_port == 9003 and {"name": "metrics", "containerPort": 9003} in container["ports"]
    for (kind, name), document in documents_.items():
        if kind in ("ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "ConfigMap"):
            assert round_trip(document, f"V1{kind}") == document, (kind, name)


@needs_kubectl
def test_the_receiver_component_gives_the_deployment_its_trigger(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE,
        "resources": [os.path.relpath(REPO / "manifests" / "overlays" / "prod", overlay)],
        "components": [os.path.relpath(MANIFESTS / "receiver", overlay)]}))
    deployment = rendered(overlay)[("Deployment", "market-ab-alerts")]
    assert round_trip(deployment, "V1Deployment") == deployment
    retraining = rendered(MANIFESTS)
    pod = deployment["spec"]["template"]["spec"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in retraining
    assert deployment["metadata"]["namespace"] == NAMESPACE == retraining[("Role", "market-ab-alerts")]["metadata"][
        "namespace"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.alerts_dir == Path("/var/lib/market-ab/alerts")  # the base's arguments kept
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == args.retrain_job.parent]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    job = retraining[("ConfigMap", volume["configMap"]["name"])]["data"][args.retrain_job.name]
    JobTrigger(yaml.safe_load(job), NAMESPACE, api=object())  # the receiver accepts it
