"""The documents a retraining applies, from a template (``manifests/retraining/templates.yaml``): the new version's
Model, the Experiment that splits the model's traffic between the serving version and it, and its Rollout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from seldon_market_ab.rollouts.document import Rollout

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[1] / "manifests" / "retraining" / "templates.yaml"


@dataclass(frozen=True)
class RetrainDocuments:
    model: dict
    experiment: dict
    rollout: Rollout


def candidate_name(variant: str, version: int) -> str:
    """The Model a version is served as: ``enhanced-v2``."""
    return f"{variant}-v{version}"


def render(template: str, variant: str, version: int, prometheus: str, serving: str | None = None) -> RetrainDocuments:
    """The template's three documents for this version, against the Model ``serving`` (default: ``variant``, the
    shipped version; after a promotion, the version promoted); ValueError naming what is missing or malformed."""
    text = Template(template).safe_substitute(serving=serving or variant)  # older templates name ${variant} only
    text = Template(text).substitute(variant=variant, version=version, prometheus=prometheus,
                                     candidate=candidate_name(variant, version))
    documents = {doc.get("kind"): doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)}
    missing = [kind for kind in ("Model", "Experiment", "Rollout") if kind not in documents]
    if missing:
        raise ValueError(f"the retraining template has no {', '.join(missing)}; it needs a Model, an Experiment and "
                         "a Rollout")
    return RetrainDocuments(documents["Model"], documents["Experiment"],
                            Rollout.model_validate(documents["Rollout"]))
