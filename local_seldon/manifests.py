"""Read Seldon Core v2 manifests and check them as Seldon would, with one line per problem.

Two kinds of check:

- **Schema**: every ``mlops.seldon.io`` object against its CRD's ``openAPIV3Schema`` (Seldon's CRD files are
  passed in; they are Seldon's, not ours). Unlike the API server, which prunes fields a schema does not define,
  an unknown field is a problem here, with the nearest known name: ``candidate`` for ``candidates`` would
  otherwise vanish without a word and the Experiment would run with no candidates.
- **Graph**: what the schema cannot say. Pipeline step inputs and triggers name a step of the pipeline or the
  pipeline itself (``<step>``, ``<step>.outputs``, ``<step>.outputs.<tensor>``, ``<pipeline>.inputs...``), lists
  are not empty, no step is named like its pipeline, the output names steps; an Experiment's ``default`` is one
  of its candidates; and, when the manifests hold Models, every model a pipeline or experiment names exists.

    problems = check(load_documents([Path("manifests/overlays/dev")]), load_crds(Path("seldon-crds")))
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

GROUP = "mlops.seldon.io"
SELDON_KINDS = ("Model", "Pipeline", "Experiment", "Server", "ServerConfig")
REFERENCE = re.compile(r"^(?P<name>[^.]+)(\.(?P<kind>inputs|outputs)(\.(?P<tensor>[^.]+))?)?$")


@dataclass(frozen=True)
class Problem:
    source: str  # file or folder
    obj: str  # Kind/name
    field: str  # spec.steps[1].inputs[0]
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.obj}: {self.field}: {self.message}"


# reading ----------------------------------------------------------------------------------------------------

class ManifestLoader(yaml.SafeLoader):
    """YAML 1.1's safe loader, except that a bare ``=`` is the string it is in Kubernetes (a YAML 1.2 reader):
    ``kubectl kustomize`` writes an AlertmanagerConfig's ``matchType: "="`` unquoted, and YAML 1.1 reads it as
    its obsolete "value" type, which the safe loader refuses."""


ManifestLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load_all(text: str) -> list:
    """Every document of ``text``, as Kubernetes reads them (``ManifestLoader``)."""
    return list(yaml.load_all(text, Loader=ManifestLoader))


def load_documents(paths: list[Path]) -> list[tuple[str, dict]]:
    """``(source, object)`` for every YAML document in the files, and in the Kustomize folders as rendered by
    ``kubectl kustomize``."""
    out = []
    for path in paths:
        if path.is_dir():
            if not any((path / name).exists() for name in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                raise ValueError(f"{path}: a folder must hold a kustomization.yaml")
            text = kustomize(path)
        else:
            text = path.read_text()
        try:
            out += [(str(path), doc) for doc in load_all(text) if doc]
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
    return out


def kustomize(folder: Path) -> str:
    try:
        done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    except FileNotFoundError as error:
        raise ValueError("kubectl is needed to render Kustomize folders (it is not on the PATH)") from error
    except subprocess.TimeoutExpired as error:
        raise ValueError(f"{folder}: kubectl kustomize took over 120 s") from error
    if done.returncode != 0:
        raise ValueError(f"{folder}: kubectl kustomize failed: {done.stderr.strip()}")
    return done.stdout


def find_crds() -> Path:
    """Seldon's CRD files: ``$SELDON_CRDS``, else ``../shared/reference/seldon-crds`` beside this checkout."""
    candidates = [Path(os.environ["SELDON_CRDS"])] if os.environ.get("SELDON_CRDS") else []
    candidates += [Path.cwd().parent / "shared" / "reference" / "seldon-crds",
                   Path(__file__).resolve().parents[2] / "shared" / "reference" / "seldon-crds"]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise ValueError("no Seldon CRDs found: pass --crds DIR or set SELDON_CRDS to a folder of Seldon Core v2's "
                     "CustomResourceDefinition YAML files (from its Helm chart seldon-core-v2-crds)")


def load_crds(folder: Path) -> dict[tuple[str, str], dict]:
    """``(kind, version) -> openAPIV3Schema`` from Seldon's CRD files."""
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition" or doc["spec"]["group"] != GROUP:
                continue
            for version in doc["spec"]["versions"]:
                schemas[(doc["spec"]["names"]["kind"], version["name"])] = version["schema"]["openAPIV3Schema"]
    if not schemas:
        raise ValueError(f"{folder}: no {GROUP} CustomResourceDefinition found")
    return schemas


# checking ---------------------------------------------------------------------------------------------------

def check(documents: list[tuple[str, dict]], crds: dict[tuple[str, str], dict]) -> list[Problem]:
    """Schema problems first; the graph rules run only on objects whose schema is right (they read its fields)."""
    problems: list[Problem] = []
    seldon = []
    for source, doc in documents:
        if not isinstance(doc, dict):
            problems.append(Problem(source, "(document)", "(root)", f"expected a Kubernetes object (a mapping), "
                                                                    f"got {_show(doc)}"))
        elif str(doc.get("apiVersion", "")).startswith(GROUP + "/"):
            seldon.append((source, doc))
    well_formed = []
    for source, doc in seldon:
        kind, version = doc.get("kind"), str(doc["apiVersion"]).split("/", 1)[1]
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        label = f"{kind}/{metadata.get('name', '?')}"
        schema = crds.get((kind, version))
        if schema is None:
            known = sorted({k for k, _ in crds})
            problems.append(Problem(source, label, "kind", f"no CRD defines {kind} {version}; expected one of "
                                                           f"{', '.join(known)} in {GROUP}/v1alpha1"))
            continue
        found = validate(doc, schema)
        if not isinstance(metadata.get("name"), str) or not metadata.get("name"):
            found.append(("metadata.name", "required: every Seldon object needs a name"))
        problems += [Problem(source, label, field, message) for field, message in found]
        if found:
            continue
        well_formed.append((source, doc))
        if kind == "Pipeline":
            problems += [Problem(source, label, f, m) for f, m in pipeline_problems(doc)]
        elif kind == "Experiment":
            problems += [Problem(source, label, f, m) for f, m in experiment_problems(doc)]
    problems += missing_models(well_formed)
    return problems


def validate(value, schema: dict, path: str = "") -> list[tuple[str, str]]:
    """The subset of OpenAPI v3 that CRD structural schemas use: types, properties (closed unless
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields``), required, items, enum, int-or-string."""
    where = path or "(object)"
    if schema.get("x-kubernetes-int-or-string"):
        return [] if isinstance(value, (int, str)) and not isinstance(value, bool) else \
            [(where, f"expected an integer or a string, got {_show(value)}")]
    expected = schema.get("type")
    if expected and not _has_type(value, expected):
        return [(where, f"expected {_article(expected)}, got {_show(value)}")]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append((where, f"expected one of {', '.join(map(str, schema['enum']))}, got {_show(value)}"))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append((_join(path, name), "required field is missing"))
        for name, item in value.items():
            if name in properties:
                problems += validate(item, properties[name], _join(path, name))
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += validate(item, schema["additionalProperties"], _join(path, name))
            elif properties and not schema.get("additionalProperties") and \
                    not schema.get("x-kubernetes-preserve-unknown-fields") and path != "metadata":
                problems.append((_join(path, name), _unknown(name, properties)))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += validate(item, schema["items"], f"{path}[{i}]")
    return problems


def pipeline_problems(doc: dict) -> list[tuple[str, str]]:
    name = doc["metadata"]["name"]
    spec = doc.get("spec") or {}
    steps = [step.get("name") for step in spec.get("steps") or []]
    problems = []
    if not steps:
        problems.append(("spec.steps", "a pipeline needs at least one step"))
    if name in steps:
        problems.append((f"spec.steps[{steps.index(name)}].name", f"a step may not share the pipeline's name "
                                                                  f"'{name}': '{name}.inputs' would be ambiguous"))
    for i, step in enumerate(spec.get("steps") or []):
        for key in ("inputs", "triggers"):
            if key in step and not step[key]:
                problems.append((f"spec.steps[{i}].{key}", f"an empty list; leave '{key}' out or name a step"))
            for j, reference in enumerate(step.get(key) or []):
                message = _reference_problem(reference, name, steps)
                if message:
                    problems.append((f"spec.steps[{i}].{key}[{j}]", message))
        # a step with no inputs takes the pipeline's
        sources = {_source(r) for r in (step.get("inputs") or []) + (step.get("triggers") or [])} or {name}
        for reference in step.get("tensorMap") or {}:
            if _source(reference) not in sources:
                problems.append((f"spec.steps[{i}].tensorMap.{reference}",
                                 f"maps a tensor of '{_source(reference)}', which this step does not take as an "
                                 f"input (it takes {', '.join(sorted(sources))})"))
    output = spec.get("output") or {}
    if "steps" in output and not output["steps"]:
        problems.append(("spec.output.steps", "an empty list; name the steps whose outputs the pipeline returns"))
    for j, reference in enumerate(output.get("steps") or []):
        match = REFERENCE.match(str(reference))
        if not match or match["name"] not in steps:
            problems.append((f"spec.output.steps[{j}]", f"'{reference}' names no step; steps are "
                                                        f"{', '.join(steps) or 'none'}"))
    return problems


def _reference_problem(reference, pipeline: str, steps: list[str]) -> str | None:
    match = REFERENCE.match(str(reference))
    if not match:
        return f"'{reference}' is not '<step>', '<step>.outputs[.<tensor>]' or '{pipeline}.inputs[.<tensor>]'"
    if match["name"] == pipeline:
        return None if match["kind"] != "outputs" else f"'{reference}': a pipeline's own outputs are not an input"
    if match["name"] not in steps:
        close = difflib.get_close_matches(match["name"], steps + [pipeline], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"'{reference}' names no step of this pipeline{hint}; steps are {', '.join(steps)}, and " \
               f"'{pipeline}.inputs' is the pipeline's input"
    return None


def _source(reference) -> str:
    """The step or pipeline a reference draws from: 'a' for 'a', 'a.outputs' and 'a.outputs.t'."""
    return str(reference).split(".", 1)[0]


def experiment_problems(doc: dict) -> list[tuple[str, str]]:
    spec = doc.get("spec") or {}
    candidates = [c.get("name") for c in spec.get("candidates") or []]
    problems = []
    if "candidates" in spec and not candidates:
        problems.append(("spec.candidates", "an empty list; an experiment needs at least one candidate"))
    if spec.get("default") and candidates and spec["default"] not in candidates:
        problems.append(("spec.default", f"'{spec['default']}' is not a candidate; candidates are "
                                         f"{', '.join(candidates) or 'none'}"))
    for i, candidate in enumerate(spec.get("candidates") or []):
        if candidate.get("weight", 0) < 0:
            problems.append((f"spec.candidates[{i}].weight", f"{candidate['weight']} is negative; weights are "
                                                             "shares of the traffic, 0 or more"))
    if candidates and sum(max(c.get("weight", 0), 0) for c in spec["candidates"]) <= 0:
        problems.append(("spec.candidates", "weights sum to zero; no request could be routed"))
    percent = (spec.get("mirror") or {}).get("percent")
    if percent is not None and not 0 <= percent <= 100:
        problems.append(("spec.mirror.percent", f"{percent} is not a percentage between 0 and 100"))
    return problems


def missing_models(seldon: list[tuple[str, dict]]) -> list[Problem]:
    """When the manifests define Models, every step and candidate that names a model must find one."""
    by_kind: dict[str, set[str]] = {}
    for _, doc in seldon:
        by_kind.setdefault(doc.get("kind"), set()).add((doc.get("metadata") or {}).get("name"))
    models = by_kind.get("Model")
    if not models:
        return []  # a set of pipelines alone is checked against models deployed elsewhere
    problems = []
    for source, doc in seldon:
        label, spec = f"{doc.get('kind')}/{doc['metadata']['name']}", doc.get("spec") or {}
        if doc.get("kind") == "Pipeline":
            for i, step in enumerate(spec.get("steps") or []):
                if step.get("name") not in models:
                    problems.append(Problem(source, label, f"spec.steps[{i}].name",
                                            f"no Model named '{step.get('name')}' in these manifests"))
        elif doc.get("kind") == "Experiment":
            targets = by_kind.get("Pipeline", set()) if spec.get("resourceType") == "pipeline" else models
            kind = "Pipeline" if spec.get("resourceType") == "pipeline" else "Model"
            names = [(f"spec.candidates[{i}].name", c.get("name")) for i, c in enumerate(spec.get("candidates") or [])]
            if spec.get("mirror"):
                names.append(("spec.mirror.name", spec["mirror"].get("name")))
            problems += [Problem(source, label, field, f"no {kind} named '{name}' in these manifests")
                         for field, name in names if name not in targets]
    return problems


# helpers ----------------------------------------------------------------------------------------------------

def _has_type(value, expected: str) -> bool:
    return {"object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool)}.get(expected, True)


def _article(kind: str) -> str:
    return {"object": "an object (a mapping)", "array": "a list", "integer": "an integer",
            "string": "a string", "boolean": "true or false", "number": "a number"}.get(kind, kind)


def _show(value) -> str:
    kind = {dict: "a mapping", list: "a list", bool: "a boolean", int: "an integer", float: "a number",
            str: "a string", type(None): "nothing (null)"}.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if isinstance(value, (str, int, float, bool)) else kind


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _unknown(name: str, properties: dict) -> str:
    close = difflib.get_close_matches(name, list(properties), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown field{hint}; Seldon would drop it silently. Known: {', '.join(sorted(properties))}"
