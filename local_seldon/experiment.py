"""Seldon Core v2 experiment semantics, pure: which candidate serves a request, whether it is mirrored, and the
``x-seldon-route`` value that makes a client's next request stick to the same candidate.

What Seldon 2.10 does (its Envoy routes, read from its source):

- A request for ``<experiment>.experiment``, or for the experiment's ``default`` (a model name, or
  ``<default>.pipeline`` when ``resourceType: pipeline``), goes to a candidate drawn at random with probability
  weight / sum of weights.
- The response carries ``x-seldon-route: :<model>_<version>:`` (a pipeline: ``:<pipeline>.pipeline:``). A request
  whose ``x-seldon-route`` contains a candidate's value goes to that candidate (sticky sessions).
- ``mirror`` receives a copy of ``percent`` % of the requests; its answer is dropped.

Two choices here are ours: Seldon's Envoy matches no route for an ``x-seldon-route`` that names no candidate; the
local gateway draws a candidate as if the header were absent. And a candidate at weight 0 takes no request, sticky
or not: that is how a rollback stops a candidate at once (on a cluster, Seldon keeps a header route per candidate
listed, so a rollback there removes the candidate or accepts its sticky clients).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUTE_HEADER = "x-seldon-route"


@dataclass(frozen=True)
class Experiment:
    name: str
    candidates: tuple[tuple[str, int], ...]  # (name, weight)
    default: str | None = None
    mirror: str | None = None
    mirror_percent: int = 0
    resource_type: str = "model"  # or "pipeline"

    @classmethod
    def from_manifest(cls, experiment: dict) -> Experiment:
        return cls.from_spec(experiment["metadata"]["name"], experiment["spec"])

    @classmethod
    def from_spec(cls, name: str, spec: dict) -> Experiment:
        mirror = spec.get("mirror") or {}
        return cls(name, tuple((c["name"], int(c["weight"])) for c in spec["candidates"]),
                   spec.get("default"), mirror.get("name"), int(mirror.get("percent", 0)),
                   spec.get("resourceType", "model"))

    def spec(self) -> dict:
        """The Experiment's ``spec`` as a manifest writes it.

        >>> Experiment("ab", (("baseline", 70), ("enhanced", 30)), "baseline").spec()["candidates"][1]
        {'name': 'enhanced', 'weight': 30}
        """
        spec = {"candidates": [{"name": name, "weight": weight} for name, weight in self.candidates]}
        if self.default:
            spec["default"] = self.default
        if self.mirror:
            spec["mirror"] = {"name": self.mirror, "percent": self.mirror_percent}
        if self.resource_type != "model":
            spec["resourceType"] = self.resource_type
        return spec

    def handles(self, seldon_model: str) -> bool:
        """Whether a request with this ``seldon-model`` header is split by this experiment."""
        if seldon_model == f"{self.name}.experiment":
            return True
        if self.default is None:
            return False
        return seldon_model == (f"{self.default}.pipeline" if self.resource_type == "pipeline" else self.default)

    def route_value(self, candidate: str, version: str = "1") -> str:
        """
        >>> Experiment("ab", (("baseline", 70),)).route_value("baseline")
        ':baseline_1:'
        """
        return f":{candidate}.pipeline:" if self.resource_type == "pipeline" else f":{candidate}_{version}:"

    def choose(self, rng: np.random.Generator, route_header: str | None = None,
               versions: dict[str, str] | None = None) -> str:
        """The candidate that serves a request: the one ``route_header`` names, else one drawn by weight.

        >>> e = Experiment("ab", (("baseline", 70), ("enhanced", 30)))
        >>> e.choose(np.random.default_rng(0), route_header=":enhanced_1:")
        'enhanced'
        """
        sticky = self.sticky(route_header, versions)
        if sticky:
            return sticky
        weights = np.array([weight for _, weight in self.candidates], dtype=float)
        if weights.sum() <= 0:
            raise ValueError(f"experiment '{self.name}': candidate weights sum to zero")
        return self.candidates[int(rng.choice(len(weights), p=weights / weights.sum()))][0]

    def sticky(self, route_header: str | None, versions: dict[str, str] | None = None) -> str | None:
        """The candidate an ``x-seldon-route`` value names, if any and if its weight is above 0.

        >>> Experiment("ab", (("baseline", 70), ("enhanced", 30))).sticky(":enhanced_1:")
        'enhanced'
        >>> Experiment("ab", (("baseline", 100), ("enhanced", 0))).sticky(":enhanced_1:") is None
        True
        """
        versions = versions or {}
        for name, weight in self.candidates if route_header else ():
            if weight > 0 and self.route_value(name, versions.get(name, "1")) in route_header:
                return name
        return None

    def mirrored(self, rng: np.random.Generator) -> bool:
        """Whether this request is also copied to the mirror."""
        return self.mirror is not None and rng.uniform(0, 100) < self.mirror_percent
