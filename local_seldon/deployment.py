"""What ``market-ab serve`` deploys from a set of Seldon manifests: pipelines, experiments and the Model
parameters, refusing any field it does not implement.

Seldon objects only: the ``Server`` is played by the one local MLServer, and other kinds (PrometheusRule,
NetworkPolicy, ...) belong to the cluster, so both are listed as not applied. A Model's deployment fields
(``storageUri``, ``requirements``, ``server``, ``memory``, replicas) are cluster concerns too: locally the model
comes from the model repository folder of the same name, or with ``artifactVersion`` from the version folder its
``storageUri`` selects (``repository.version_folder``). Every other field the gateway does not implement is an
error at start rather than a silent difference from the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .experiment import Experiment
from .manifests import GROUP, experiment_problems, pipeline_problems
from .pipeline import Plan

# Fields the gateway implements, or (Model) that only say where and how big the model runs on a cluster.
IMPLEMENTED = {
    "Pipeline": {"spec": {"steps", "output"},
                 "spec.steps[]": {"name", "inputs", "tensorMap", "triggers", "inputsJoinType", "triggersJoinType",
                                  "batch"},
                 "spec.steps[].batch": {"size"},
                 "spec.output": {"steps", "stepsJoin", "tensorMap"}},
    "Experiment": {"spec": {"default", "candidates", "mirror", "resourceType"}},
    "Model": {"spec": {"storageUri", "artifactVersion", "requirements", "server", "memory", "replicas", "minReplicas",
                       "maxReplicas", "parameters"}},
}
NOT_APPLIED_KINDS = ("Server", "ServerConfig")


class DeploymentError(ValueError):
    """The manifests cannot run locally; the message has one line per problem."""


@dataclass
class Deployment:
    plans: dict[str, Plan] = field(default_factory=dict)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    model_parameters: dict[str, dict[str, str]] = field(default_factory=dict)  # Model -> spec.parameters
    model_versions: dict[str, tuple[str, int]] = field(default_factory=dict)  # Model -> (storageUri, artifactVersion)
    not_applied: list[str] = field(default_factory=list)  # Kind/name of the objects left to the cluster
    server: str = "mlserver"  # the Server the local MLServer plays (its name labels Seldon's model metrics)

    @classmethod
    def from_documents(cls, documents: list[tuple[str, dict]]) -> Deployment:
        deployment, problems, sources, seen = cls(), [], {}, {}
        for source, doc in documents:
            if not isinstance(doc, dict):
                continue
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
            label = f"{source}: {kind}/{name}"
            if not str(doc.get("apiVersion", "")).startswith(GROUP + "/") or kind in NOT_APPLIED_KINDS:
                deployment.not_applied.append(f"{kind}/{name}")
                if kind == "Server" and str(doc.get("apiVersion", "")).startswith(GROUP + "/") and name \
                        and not any(n.startswith("Server/") for n in deployment.not_applied[:-1]):
                    deployment.server = name  # the first Server: one MLServer plays them all
                continue
            if kind not in IMPLEMENTED:
                problems.append(f"{label}: kind {kind} is not implemented by market-ab serve")
                continue
            if (kind, name) in seen:
                problems.append(f"{label}: defined twice (also in {seen[kind, name]}); the second would replace the "
                                "first")
                continue
            seen[kind, name] = source
            try:
                found = unimplemented_fields(kind, doc.get("spec") or {})
                found += [f"{where}: {message}" for where, message in
                          {"Pipeline": pipeline_problems, "Experiment": experiment_problems}.get(kind,
                                                                                                lambda _: [])(doc)]
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                found = [f"malformed: {error!r}; run `market-ab manifests check` for the details"]
            if found:
                problems += [f"{label}: {message}" for message in found]
                continue
            try:
                if kind == "Pipeline":
                    plan = Plan.from_manifest(doc)
                    problems += [f"{label}: {message}" for message in _reads_side_steps(plan)]
                    deployment.plans[name] = plan
                elif kind == "Experiment":
                    deployment.experiments[name] = Experiment.from_manifest(doc)
                    sources[name] = source
                else:
                    deployment.model_parameters[name], version = model_spec(doc["spec"])
                    if version is not None:
                        deployment.model_versions[name] = version
            except (KeyError, TypeError, ValueError) as error:
                problems.append(f"{label}: {error}")
        problems += deployment._dangling(sources)
        if problems:
            raise DeploymentError("\n".join(problems))
        return deployment

    @property
    def models(self) -> set[str]:
        """Every model a pipeline step or a model experiment names (they must be in the model repository)."""
        names = {step.name for plan in self.plans.values() for step in plan.steps}
        for experiment in self.experiments.values():
            if experiment.resource_type == "model":
                names |= {name for name, _ in experiment.candidates} | ({experiment.mirror} - {None})
        return names | set(self.model_parameters)

    def updated_experiment(self, name: str, spec, served: set[str]) -> Experiment:
        """Experiment ``name`` as ``spec`` (its manifest's ``spec``) redefines it while serving, checked like a
        manifest: candidates and the mirror must be served (``served``: the repository's models), weights 0 or more
        and not all 0. ``default`` and ``resourceType`` stay as deployed: they decide which requests the experiment
        splits, which a change of weights must not move. DeploymentError, one line per problem."""
        current = self.experiments.get(name)
        if current is None:
            raise KeyError(f"no experiment '{name}'; these manifests define "
                           f"{', '.join(sorted(self.experiments)) or 'none'}")
        problems = self._spec_problems(spec, served, current.resource_type)
        for key, deployed in (("default", current.default), ("resourceType", current.resource_type)):
            given = spec.get(key, "model" if key == "resourceType" else None)
            if given != deployed:
                problems.append(f"spec.{key}: {given!r} differs from the deployed {deployed!r}; the admin port "
                                "changes candidates, weights and the mirror, not which requests the experiment splits")
        if problems:
            raise DeploymentError("\n".join(problems))
        return Experiment.from_spec(name, spec)

    def new_experiment(self, name: str, spec, served: set[str]) -> Experiment:
        """Experiment ``name``, not yet deployed, as ``spec`` defines it, checked like ``updated_experiment``; its
        ``default`` must be a served model that no other experiment splits. DeploymentError, one line per problem."""
        if name in self.experiments:
            raise DeploymentError(f"experiment '{name}' exists")
        resource_type = spec.get("resourceType", "model") if isinstance(spec, dict) else "model"
        if resource_type != "model":
            raise DeploymentError(f"spec.resourceType: {resource_type!r}; the admin port creates model experiments "
                                  "only")
        problems = self._spec_problems(spec, served, "model")
        default = spec.get("default")
        if default is not None:
            taken = [e.name for e in self.experiments.values() if e.default == default]
            if taken:
                problems.append(f"spec.default: '{default}' is already Experiment/{taken[0]}'s default; requests for "
                                "it could be split by only one of them")
        if problems:
            raise DeploymentError("\n".join(problems))
        return Experiment.from_spec(name, spec)

    def _spec_problems(self, spec, served: set[str], resource_type: str) -> list[str]:
        if not isinstance(spec, dict):
            raise DeploymentError(f"expected the Experiment's spec as a JSON object, got {type(spec).__name__}")
        problems = unimplemented_fields("Experiment", spec)
        candidates = spec.get("candidates")
        if not isinstance(candidates, list) or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str) and type(c.get("weight")) is int
                for c in candidates):
            problems.append("spec.candidates: expected a list of {\"name\": string, \"weight\": integer}")
        mirror = spec.get("mirror")
        if mirror is not None and not (isinstance(mirror, dict) and isinstance(mirror.get("name"), str)
                                       and type(mirror.get("percent", 0)) is int):
            problems.append("spec.mirror: expected {\"name\": string, \"percent\": integer}")
        if problems:
            raise DeploymentError("\n".join(problems))
        problems += [f"{where}: {message}" for where, message in experiment_problems({"spec": spec})]
        names = [c["name"] for c in candidates]
        problems += [f"spec.candidates: '{n}' is listed twice" for n in sorted({n for n in names
                                                                                 if names.count(n) > 1})]
        targets = set(self.plans) if resource_type == "pipeline" else served
        what = "pipeline" if resource_type == "pipeline" else "model"
        for where, target in [(f"spec.candidates[{i}].name", n) for i, n in enumerate(names)] + \
                ([("spec.mirror.name", mirror["name"])] if mirror else []):
            if target not in targets:
                problems.append(f"{where}: no {what} '{target}' is served; there are "
                                f"{', '.join(sorted(targets)) or 'none'}")
        return problems

    def _dangling(self, sources: dict[str, str]) -> list[str]:
        problems = []
        defaults: dict[str, str] = {}
        for experiment in self.experiments.values():
            if experiment.default and experiment.default in defaults:
                problems.append(f"{sources[experiment.name]}: Experiment/{experiment.name}: its default "
                                f"'{experiment.default}' is also Experiment/{defaults[experiment.default]}'s; requests "
                                "for it could be split by only one of them")
            elif experiment.default:
                defaults[experiment.default] = experiment.name
        for experiment in self.experiments.values():
            if experiment.resource_type != "pipeline":
                continue
            for name in [n for n, _ in experiment.candidates] + ([experiment.mirror] if experiment.mirror else []):
                if name not in self.plans:
                    problems.append(f"{sources[experiment.name]}: Experiment/{experiment.name}: names pipeline "
                                    f"'{name}', which these manifests do not define")
        return problems


def model_spec(spec: dict) -> tuple[dict[str, str], tuple[str, int] | None]:
    """A Model's ``spec.parameters`` as a dict, and its ``(storageUri, artifactVersion)`` when it names a version.

    >>> model_spec({"storageUri": "gs://b/models/m/versions", "artifactVersion": 2,
    ...             "parameters": [{"name": "torch_threads", "value": "1"}]})
    ({'torch_threads': '1'}, ('gs://b/models/m/versions', 2))
    """
    parameters = {str(p["name"]): str(p["value"]) for p in spec.get("parameters") or []}
    version = spec.get("artifactVersion")
    if version is None:
        return parameters, None
    if type(version) is not int or version < 0:
        raise ValueError(f"spec.artifactVersion: {version!r} is not a version number (an integer, 0 or more)")
    if not isinstance(spec.get("storageUri"), str):
        raise ValueError("spec.storageUri: a Model with artifactVersion needs the storageUri it selects from")
    return parameters, (spec["storageUri"], version)


def _reads_side_steps(plan: Plan) -> list[str]:
    """A batched step answers off the response path, so nothing on that path can take its outputs."""
    side = {step.name for step in plan.side_steps}
    problems = [f"step '{step.name}' reads the batched step '{reference.source}', whose answers market-ab serve "
                "does not pass on (batched steps are side steps here)"
                for step in plan.steps for reference in step.inputs + step.triggers if reference.source in side]
    problems += [f"output reads the batched step '{reference.source}', whose answers market-ab serve does not "
                 "pass on (batched steps are side steps here)" for reference in plan.output if reference.source in side]
    return problems


def unimplemented_fields(kind: str, spec: dict) -> list[str]:
    """
    >>> spec = {"steps": [{"name": "a", "joinWindowMs": 5}], "allowCycles": True}
    >>> for problem in unimplemented_fields("Pipeline", spec):
    ...     print(problem)
    spec.allowCycles: not implemented by market-ab serve
    spec.steps[0].joinWindowMs: not implemented by market-ab serve
    """
    rules, found = IMPLEMENTED[kind], []

    def visit(value, where: str, rule: str) -> None:
        if not isinstance(value, dict) or rule not in rules:
            return
        for key in sorted(value):
            if key not in rules[rule]:
                found.append(f"{where}.{key}: not implemented by market-ab serve")
                continue
            child = value[key]
            if isinstance(child, list):
                for i, item in enumerate(child):
                    visit(item, f"{where}.{key}[{i}]", f"{rule}.{key}[]")
            else:
                visit(child, f"{where}.{key}", f"{rule}.{key}")

    visit(spec, "spec", "spec")
    return found
