"""The Seldon manifests: both overlays render with `kubectl kustomize` and validate against Seldon's CRDs (from
../shared/reference, not copied here), every model a pipeline or experiment names exists, Seldon's own samples
are accepted, each kind of mistake is reported on one line naming object and field, and the alert rules and
dashboard queries pass promtool. No cluster runs here: `kubectl kustomize` renders offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from seldon_market_ab.cli.commands import main
from seldon_market_ab.local_seldon.manifests import check, load_crds, load_documents

from ..conftest import PACKAGE_DIR, REPO, setup_config

SHARED = REPO.parent / "shared" / "reference"
CRDS = SHARED / "seldon-crds"
MANIFESTS = REPO / "manifests"
OVERLAYS = [MANIFESTS / "overlays" / name for name in ("dev", "prod")]


@pytest.fixture(scope="module")
def crds():
    return load_crds(CRDS)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_renders_and_validates(overlay, crds):
    documents = load_documents([overlay])
    assert [str(p) for p in check(documents, crds)] == []
    by_kind: dict[str, set] = {}
    for _, doc in documents:
        by_kind.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    assert by_kind["Model"] == {"baseline", "enhanced", "lightweight", "robust", "aggressive", "conservative",
                                "thompson-router", "regime-router", "drift-detector", "outcomes"}
    assert by_kind["Pipeline"] == {"mab", "contextual"} and by_kind["Experiment"] == {"ab-test"}
    assert {"Server", "PrometheusRule", "PodMonitor", "NetworkPolicy", "ConfigMap"} <= set(by_kind)
    models = by_kind["Model"]
    for _, doc in documents:  # the rule the checker applies, spelt out
        if doc["kind"] == "Pipeline":
            assert {step["name"] for step in doc["spec"]["steps"]} <= models
        if doc["kind"] == "Experiment":
            assert {c["name"] for c in doc["spec"]["candidates"]} | {doc["spec"]["mirror"]["name"]} <= models
    assert all(doc["metadata"]["namespace"] for _, doc in documents)


def test_the_models_are_the_repository_and_run_our_runtimes(crds):
    """Every Model is a folder of models/ served by our Server, with the custom-runtime requirements."""
    documents = load_documents([MANIFESTS / "base"])
    for _, doc in documents:
        if doc["kind"] == "Model":
            name = doc["metadata"]["name"]
            assert (REPO / "models" / name / "model-settings.json").exists(), name
            assert doc["spec"]["requirements"] == ["mlserver", "python"] and doc["spec"]["server"] == \
                "mlserver-market-ab"


def test_prod_keeps_router_state_on_redis():
    documents = load_documents([OVERLAYS[1]])
    routers = {doc["metadata"]["name"]: {p["name"]: p["value"] for p in doc["spec"]["parameters"]}
               for _, doc in documents if doc["kind"] == "Model" and doc["metadata"]["name"].endswith("-router")}
    assert set(routers) == {"thompson-router", "regime-router"}
    assert all(params["store"].startswith("redis://market-ab-redis:") for params in routers.values())
    redis = next(doc for _, doc in documents if doc["kind"] == "StatefulSet")
    assert redis["spec"]["template"]["spec"]["containers"][0]["args"] == ["--appendonly", "yes", "--appendfsync",
                                                                          "always"]


def test_seldons_own_samples_are_accepted(crds):
    samples = sorted((SHARED / "seldon-samples").rglob("*.yaml"))
    assert len(samples) >= 30
    assert [str(p) for p in check(load_documents(samples), crds)] == []


PIPELINE = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"},
            "spec": {"steps": [{"name": "a"}, {"name": "b", "inputs": ["a.outputs.x"]}],
                     "output": {"steps": ["b"]}}}
EXPERIMENT = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "e"},
              "spec": {"default": "a", "candidates": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}}


def _edit(document: dict, path: str, value) -> dict:
    doc = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    elif value is None:
        del target[last]
    else:
        target[last] = value
    return doc


MISTAKES = [  # (document, what the line must say)
    (_edit(EXPERIMENT, "spec.candidate", [{"name": "a", "weight": 1}]),
     ["Experiment/e", "spec.candidate", "did you mean 'candidates'?"]),
    (_edit(PIPELINE, "spec.steps.1.inputs", ["c.outputs"]),
     ["Pipeline/p", "spec.steps[1].inputs[0]", "'c.outputs' names no step"]),
    (_edit(PIPELINE, "spec.steps.1.inputs", []), ["Pipeline/p", "spec.steps[1].inputs", "an empty list"]),
    (_edit(PIPELINE, "spec.steps.1.triggers", []), ["Pipeline/p", "spec.steps[1].triggers", "an empty list"]),
    (_edit(_edit(PIPELINE, "spec.steps.1.name", "p"), "spec.output.steps", ["p"]),
     ["Pipeline/p", "spec.steps[1].name", "share the pipeline's name"]),
    (_edit(PIPELINE, "spec.output.steps", ["z"]), ["Pipeline/p", "spec.output.steps[0]", "'z' names no step"]),
    (_edit(EXPERIMENT, "spec.default", "c"), ["Experiment/e", "spec.default", "'c' is not a candidate"]),
    (_edit(PIPELINE, "spec.steps.1.batch", {"size": "sixty"}),
     ["Pipeline/p", "spec.steps[1].batch.size", "expected an integer"]),
    (_edit(EXPERIMENT, "spec.candidates", None), ["Experiment/e", "spec.candidates", "required field is missing"]),
]


@pytest.mark.parametrize(("document", "words"), MISTAKES, ids=[w[1] + ":" + w[2][:12] for _, w in MISTAKES])
def test_each_mistake_is_one_line_naming_object_and_field(tmp_path, capsys, document, words):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["manifests", "check", str(path), "--crds", str(CRDS)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    assert all(word in lines[0] for word in words), lines[0]


def test_a_missing_model_is_named_when_the_manifests_define_models(tmp_path, capsys):
    model = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": {"name": "a"},
             "spec": {"storageUri": "gs://bucket/a"}}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all([model, PIPELINE]))
    assert main(["manifests", "check", str(path), "--crds", str(CRDS)]) == 1
    assert "Pipeline/p: spec.steps[1].name: no Model named 'b' in these manifests" in capsys.readouterr().out


def test_valid_manifests_exit_zero(capsys):
    assert main(["manifests", "check", *map(str, OVERLAYS), "--crds", str(CRDS)]) == 0
    assert capsys.readouterr().out == ""


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: install the distribution's prometheus package (.ci/run does)"
    return path


def _rules(tmp_path: Path) -> Path:
    rule = yaml.safe_load((MANIFESTS / "base" / "monitoring" / "prometheusrule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    return tmp_path / "rules.yaml"


def test_alert_rules_pass_promtool_check_and_unit_tests(tmp_path):
    rules = _rules(tmp_path)
    checked = subprocess.run([_promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shutil.copy(MANIFESTS / "tests" / "alerts.test.yaml", tmp_path)
    tested = subprocess.run([_promtool(), "test", "rules", "alerts.test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    tested_alerts = set()
    for case in yaml.safe_load((MANIFESTS / "tests" / "alerts.test.yaml").read_text())["tests"]:
        tested_alerts |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == tested_alerts  # every alert has a test in which it fires


def test_every_dashboard_query_parses(tmp_path):
    dashboard = json.loads((MANIFESTS / "base" / "monitoring" / "market-ab-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    recording = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e}
                                                             for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(recording))
    checked = subprocess.run([_promtool(), "check", "rules", str(tmp_path / "dashboard.yaml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_images_install_what_each_part_needs():
    """The Dockerfile cannot be built here (no container engine). At least: its wheel stage copies every folder
    setup.cfg maps, the Server's image installs no tools, and each manifest runs the image that has its command."""
    config = setup_config()
    folders = set(PACKAGE_DIR.values())
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", dockerfile, flags=re.MULTILINE | re.DOTALL))
    copied = {line.split()[1] for line in stages["wheel"].splitlines() if line.startswith("COPY")}
    assert folders <= copied
    extras = {stage: set(re.findall(r"\[([a-z,]+)\]\"", body)[0].split(",")) for stage, body in stages.items()
              if stage != "wheel"}
    assert extras == {"serving": {"drift", "redis"}, "tools": {"tools", "redis", "kubernetes"}}
    # every image runs the Python setup.cfg claims (the official MLServer 1.7.1 images run 3.10)
    lowest = config["options"]["python_requires"].split(",")[0].removeprefix(">=").strip()
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert all(base in stages or base.startswith(f"python:{lowest}-") for base in bases), bases
    images = {"serving": "ghcr.io/seldon-market-ab/mlserver:0.1.0", "tools": "ghcr.io/seldon-market-ab/tools:0.1.0"}
    for _, document in load_documents([MANIFESTS / "base", MANIFESTS / "rollouts", MANIFESTS / "retraining"]):
        for container in _containers(document):
            if container["image"].startswith("ghcr.io/seldon-market-ab/"):
                runs_the_command = container.get("command", [None])[0] == "market-ab"
                assert container["image"] == images["tools" if runs_the_command else "serving"], container


def _containers(document: dict) -> list[dict]:
    """Every container spec in a document, wherever it sits (a Deployment, a Job, a Server's podSpec, a Job
    template held in a ConfigMap)."""
    found = []
    if isinstance(document, dict):
        if "image" in document and "name" in document:
            found.append(document)
        for key, value in document.items():
            if key == "data" and isinstance(value, dict):  # a ConfigMap: its YAML files' documents
                value = [doc for name, text in value.items() if name.endswith(".yaml")
                         for doc in yaml.safe_load_all(text)]
            found += _containers(value)
    elif isinstance(document, list):
        for item in document:
            found += _containers(item)
    return found


def test_each_pipeline_takes_exactly_the_tensors_its_router_emits():
    """A router answers with one tensor named after the arm it chose; a pipeline step fed by a name the router
    never emits would never run, and an arm with no step would lose its requests. Routers' arms come from their
    model-settings.json with the Model's spec.parameters on top, as Seldon's agent merges them."""
    documents = load_documents([MANIFESTS / "base"])
    models = {doc["metadata"]["name"]: doc for _, doc in documents if doc["kind"] == "Model"}
    for _, pipeline in documents:
        if pipeline["kind"] != "Pipeline":
            continue
        router = pipeline["spec"]["steps"][0]["name"]
        extra = json.loads((REPO / "models" / router / "model-settings.json").read_text())["parameters"]["extra"]
        extra.update({p["name"]: p["value"] for p in models[router]["spec"].get("parameters", [])})
        if router == "regime-router":
            emitted = {extra[key] for key in extra if key.startswith("route_")} | {extra["default_arm"]}
        else:
            emitted = set(str(extra["arms"]).split(",")) | {extra["default_arm"]}
        fed = {ref.split(".")[2] for step in pipeline["spec"]["steps"] for ref in step.get("inputs", [])
               if ref.startswith(f"{router}.outputs.")}
        assert fed == emitted, pipeline["metadata"]["name"]
        for step in pipeline["spec"]["steps"]:
            for ref in step.get("inputs", []):
                if ref.startswith(f"{router}.outputs."):
                    assert step["name"] == ref.split(".")[2] and step["tensorMap"] == {ref: "ohlcv"}


MALFORMED = [  # what people write by mistake: each a clean line, never a traceback
    ("steps as strings", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
                         "spec: {steps: [a, b]}\n", "spec.steps[0]: expected an object"),
    ("inputs as a string", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
                           "spec: {steps: [{name: a, inputs: p.inputs}]}\n", "spec.steps[0].inputs: expected a list"),
    ("candidates as strings", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n"
                              "spec: {candidates: [a]}\n", "spec.candidates[0]: expected an object"),
    ("no metadata", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\n"
                    "spec: {candidates: [{name: a, weight: 1}]}\n", "metadata.name: required"),
    ("a list", "- a\n- b\n", "expected a Kubernetes object"),
    ("negative weight", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n"
                        "spec: {candidates: [{name: a, weight: 10}, {name: b, weight: -5}]}\n",
     "spec.candidates[1].weight: -5 is negative"),
    ("mirror percent", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n"
                       "spec: {candidates: [{name: a, weight: 1}], mirror: {name: m, percent: 150}}\n",
     "spec.mirror.percent: 150 is not a percentage"),
]


@pytest.mark.parametrize(("case", "text", "expected"), MALFORMED, ids=[case for case, _, _ in MALFORMED])
def test_malformed_manifests_get_a_line_not_a_traceback(tmp_path, capsys, case, text, expected):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    assert main(["manifests", "check", str(path), "--crds", str(CRDS)]) == 1
    out = capsys.readouterr().out
    assert expected in out, out


def test_invalid_yaml_is_an_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("kind: [unclosed\n")
    assert main(["manifests", "check", str(path), "--crds", str(CRDS)]) == 2
    assert f"{path}: not valid YAML" in capsys.readouterr().err
