"""Seldon Core v2 experiment semantics in local_seldon/experiment.py, pure: the shipped ab-test and Seldon's
sample experiments, the weighted split, sticky routing by x-seldon-route, the mirror, and which requests an
experiment takes. Seeds are fixed, so every count below is exact for this numpy."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from seldon_market_ab.local_seldon.experiment import Experiment
from seldon_market_ab.local_seldon.manifests import load_documents

from ..conftest import REPO

SAMPLES = REPO.parent / "shared" / "reference" / "seldon-samples" / "experiments"


@pytest.fixture(scope="module")
def ab_test() -> Experiment:
    documents = load_documents([REPO / "manifests" / "base"])
    return Experiment.from_manifest(next(doc for _, doc in documents if doc["kind"] == "Experiment"))


def test_the_shipped_ab_test(ab_test):
    assert ab_test.candidates == (("baseline", 70), ("enhanced", 30))
    assert ab_test.default == "baseline" and (ab_test.mirror, ab_test.mirror_percent) == ("lightweight", 100)
    assert ab_test.handles("ab-test.experiment") and ab_test.handles("baseline")
    assert not ab_test.handles("enhanced") and not ab_test.handles("baseline.pipeline")


def test_the_split_follows_the_weights(ab_test):
    rng = np.random.default_rng(0)
    chosen = [ab_test.choose(rng) for _ in range(10_000)]
    share = chosen.count("enhanced") / len(chosen)
    low, high = 0.3 - 3 * np.sqrt(0.3 * 0.7 / 10_000), 0.3 + 3 * np.sqrt(0.3 * 0.7 / 10_000)
    assert low < share < high, share
    assert set(chosen) == {"baseline", "enhanced"}  # never the mirror


def test_a_route_header_sticks_to_its_candidate(ab_test):
    rng = np.random.default_rng(1)
    first = ab_test.choose(rng)
    header = ab_test.route_value(first)
    assert all(ab_test.choose(rng, route_header=header) == first for _ in range(200))
    # a header carrying several hops' values, as Seldon's does, still sticks
    assert ab_test.choose(rng, route_header=f":ab-test.experiment:{ab_test.route_value('enhanced')}") == "enhanced"
    # one naming no candidate: drawn as if absent (Seldon's Envoy would match no route)
    assert {ab_test.choose(rng, route_header=":other_1:") for _ in range(200)} == {"baseline", "enhanced"}


def test_the_mirror_gets_its_percent():
    rng = np.random.default_rng(2)
    assert sum(Experiment("e", (("a", 1),), mirror="m", mirror_percent=30).mirrored(rng) for _ in range(10_000)) \
        in range(2_850, 3_150)
    assert not any(Experiment("e", (("a", 1),), mirror="m", mirror_percent=0).mirrored(rng) for _ in range(100))
    assert not any(Experiment("e", (("a", 1),)).mirrored(rng) for _ in range(100))


def test_pipeline_experiments_route_by_pipeline_name():
    experiment = Experiment("e", (("p1", 50), ("p2", 50)), default="p1", resource_type="pipeline")
    assert experiment.handles("p1.pipeline") and not experiment.handles("p1")
    assert experiment.route_value("p2") == ":p2.pipeline:"


def test_every_seldon_sample_experiment_reads():
    experiments = [Experiment.from_manifest(yaml.safe_load(p.read_text())) for p in sorted(SAMPLES.glob("*.yaml"))]
    assert len(experiments) >= 5
    rng = np.random.default_rng(3)
    for experiment in experiments:
        assert experiment.choose(rng) in {name for name, _ in experiment.candidates}
