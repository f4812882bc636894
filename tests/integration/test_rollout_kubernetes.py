"""The rollout's Kubernetes target against a fake API server (no cluster runs here: ``tests/fake_kubernetes.py``
stands in for one, over real HTTP, with the merge-patch protocol and resourceVersion preconditions), through the
official ``kubernetes`` client and a kubeconfig; and the manifests that run the loop in a cluster, rendered by
``kubectl kustomize``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from seldon_market_ab.rollouts.audit import AuditLog
from seldon_market_ab.rollouts.document import Rollout
from seldon_market_ab.rollouts.kubernetes_target import KubernetesExperiment
from seldon_market_ab.rollouts.targets import TargetError, candidate_weights

from ..conftest import MARKET_AB
from ..fake_kubernetes import FakeKubernetes, experiment
from ..unit.test_rollout_decisions import SPEC, ScriptedFigures

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "seldon-market-ab"


def api(kube: FakeKubernetes, folder: Path, token: str | None = None):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(kube.kubeconfig(folder / "kubeconfig", NAMESPACE, *([token] if token else []))),
                            client_configuration=configuration)
    return client.CustomObjectsApi(client.ApiClient(configuration))


@pytest.fixture
def kube():
    objects = {(NAMESPACE, "ab-test"): experiment("ab-test", NAMESPACE, {"baseline": 70, "enhanced": 30},
                                                  default="baseline", mirror={"name": "lightweight", "percent": 100})}
    with FakeKubernetes(objects) as fake:
        yield fake


def test_weights_are_a_merge_patch_of_the_candidates_at_the_version_read(kube, tmp_path):
    target = KubernetesExperiment("ab-test", NAMESPACE, api(kube, tmp_path))
    assert candidate_weights(target.spec()) == {"baseline": 70, "enhanced": 30}
    target.set_weights({"baseline": 90, "enhanced": 10})
    stored = kube.objects[(NAMESPACE, "ab-test")]
    assert candidate_weights(stored["spec"]) == {"baseline": 90, "enhanced": 10}
    assert stored["spec"]["default"] == "baseline" and stored["spec"]["mirror"]["percent"] == 100  # untouched
    assert kube.patches == [{"metadata": {"resourceVersion": "1"},
                             "spec": {"candidates": [{"name": "baseline", "weight": 90},
                                                     {"name": "enhanced", "weight": 10}]}}]


def test_a_change_made_meanwhile_is_read_again_not_overwritten(kube, tmp_path):
    target = KubernetesExperiment("ab-test", NAMESPACE, api(kube, tmp_path))
    original_get = target._get
    raced = threading.Event()

    def get_then_someone_edits():
        current = original_get()
        if not raced.is_set():  # between our read and our patch, another writer bumps the version
            raced.set()
            key = (NAMESPACE, "ab-test")
            kube.objects[key] = {**kube.objects[key], "metadata": {**kube.objects[key]["metadata"],
                                                                   "resourceVersion": "7"}}
        return current

    target._get = get_then_someone_edits
    target.set_weights({"baseline": 50, "enhanced": 50})
    assert [p["metadata"]["resourceVersion"] for p in kube.patches] == ["7"]  # the stale patch was refused (409)
    assert candidate_weights(kube.objects[(NAMESPACE, "ab-test")]["spec"]) == {"baseline": 50, "enhanced": 50}


@pytest.mark.parametrize("token, name, expected", [
    ("denied", "ab-test", "403 forbidden: the ServiceAccount needs get and patch on experiments.mlops.seldon.io"),
    (None, "nope", "404 no Experiment nope in namespace seldon-market-ab"),
    ("wrong", "ab-test", "401 not authenticated"),
])
def test_refusals_are_named(kube, tmp_path, token, name, expected):
    target = KubernetesExperiment(name, NAMESPACE, api(kube, tmp_path, token))
    with pytest.raises(TargetError, match=expected):
        target.set_weights({"baseline": 100, "enhanced": 0})
    assert kube.patches == []


def test_abort_ends_a_killed_runs_rollout_through_the_kubernetes_api(kube, tmp_path):
    """`market-ab rollout abort FILE --kubernetes`, as a user would type it, with a kubeconfig (KUBECONFIG)."""
    from seldon_market_ab.rollouts.runner import RolloutRunner

    from ..unit.test_rollout_decisions import Target

    path = tmp_path / "enhanced.yaml"
    spec = SPEC.model_copy(update={"experiment": "ab-test", "interval": 0.01})
    document = {"apiVersion": "market-ab.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "enhanced"},
                "spec": spec.model_dump(by_alias=True, mode="json")}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SystemExit):  # a loop killed after its first decision left the run unfinished
        RolloutRunner(Rollout.model_validate(document), Target(dies_at=25), AuditLog(path.with_suffix(
            ".audit.jsonl")), ScriptedFigures()).run()
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig", NAMESPACE))}
    done = subprocess.run([*MARKET_AB, "rollout", "abort", str(path), "--kubernetes"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["phase"] == "aborted"
    assert candidate_weights(kube.objects[(NAMESPACE, "ab-test")]["spec"]) == {"baseline": 100, "enhanced": 0}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the Kustomize folder")
def test_the_cluster_manifests_render_and_grant_only_what_the_loop_needs():
    rendered = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "rollouts")], capture_output=True,
                              text=True, check=True).stdout
    documents = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered) if d}
    role = next(d for (kind, _), d in documents.items() if kind == "Role")
    assert role["rules"] == [{"apiGroups": ["mlops.seldon.io"], "resources": ["experiments"],
                              "verbs": ["get", "patch"]}]
    job = next(d for (kind, _), d in documents.items() if kind == "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # what podFailurePolicy needs
    rules = job["spec"]["podFailurePolicy"]["rules"]  # an ended or unstartable rollout is never run again
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [1, 2]
    assert pod["terminationGracePeriodSeconds"] >= 120  # SIGTERM's abort sets the weights and waits for two scrapes
    assert pod["serviceAccountName"] == next(n for (kind, n) in documents if kind == "ServiceAccount")
    command = pod["containers"][0]["args"]
    assert command[:3] == ["rollout", "run", "/etc/market-ab/rollout.yaml"] and "--kubernetes" in command
    monitor = next(d for (kind, _), d in documents.items() if kind == "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert "--metrics-port" in command and {"name": "metrics", "containerPort": 9003} in \
        pod["containers"][0]["ports"]
    example = next(d for (kind, _), d in documents.items() if kind == "ConfigMap")["data"]["rollout.yaml"]
    Rollout.from_yaml(example)  # the example Rollout the Job runs is a valid document
