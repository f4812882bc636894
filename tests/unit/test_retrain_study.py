"""The retraining study: the stored document renders its JSON, the policies' schedules keep their rules, and a
retrained model sees nothing after its cut. No model is trained here."""

import copy
import doctest
import json

import numpy as np
import pandas as pd
import pytest

from seldon_market_ab.analysis import retrain_study
from seldon_market_ab.analysis.retrain_study import (
    NEVER_CUT,
    alert_episodes,
    drift_retrainings,
    judgements_to_fire,
    max_drawdown,
    paired_difference,
    predicted_days,
    render,
    serving_model,
    training_data,
)

from ..conftest import REPO

DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def stored():
    return json.loads((DOCS / "retrain-study.json").read_text())


# (a) the stored evidence ----------------------------------------------------------------------------------------

def test_document_is_the_rendering_of_the_stored_json(stored):
    assert (DOCS / "retrain-study.md").read_text() == render(stored) + "\n", \
        "docs/retrain-study.md is stale: run `python -m seldon_market_ab.analysis.retrain_study`"
    assert (DOCS / "retrain-study.png").stat().st_size > 10_000


def test_stored_run_follows_the_stated_policies(stored):
    cuts = stored["cuts"]
    assert cuts["never"] == [NEVER_CUT]
    assert cuts["calendar"] == [NEVER_CUT, *retrain_study.CALENDAR_CUTS]
    assert cuts["calendar"][1] == "2012-06-30" and cuts["calendar"][-1] == "2018-06-30"
    retrained = [e["retrained"] for e in stored["episodes"] if e["retrained"]]
    assert cuts["drift alerts"] == [NEVER_CUT, *retrained] and retrained == sorted(retrained)
    for policy, entry in stored["policies"].items():
        assert entry["retrainings"] == len(cuts[policy]) - 1
        assert entry["n"] == stored["period"]["instrument_days"]
        assert entry["accuracy_ci"][0] <= entry["accuracy"] <= entry["accuracy_ci"][1]
    assert {t["cut"] for t in stored["trainings"]} == {c for policy in cuts.values() for c in policy}
    assert all(t["last_label"] <= t["cut"] for t in stored["trainings"] if t["cut"] != NEVER_CUT)
    assert stored["shipped_check"]["same_direction_share"] == 1.0  # "never" is the shipped model


def test_stored_days_are_served_by_models_cut_before_them(stored):
    days = pd.to_datetime(stored["daily"]["day"])
    for cuts in stored["cuts"].values():
        cuts = pd.to_datetime(cuts)
        assert (cuts[serving_model(days, cuts)] < days).all()


def test_conclusion_is_written_from_the_numbers(stored):
    assert "no evidence" in render(stored) or "exclude 0" in render(stored)
    better = copy.deepcopy(stored)
    better["differences"]["drift alerts - never"]["accuracy_ci"] = [0.001, 0.02]
    assert "drift alerts beats never on accuracy" in render(better)
    worse = copy.deepcopy(stored)
    worse["differences"]["calendar - never"]["sharpe_ci"] = [-0.9, -0.1]
    assert "calendar trails never on sharpe" in render(worse)
    for entry in (none := copy.deepcopy(stored))["differences"].values():
        entry["accuracy_ci"], entry["sharpe_ci"] = [-0.01, 0.01], [-0.5, 0.5]
    assert "no evidence that retraining the baseline helps or hurts" in render(none)


# (b) the policies' schedules --------------------------------------------------------------------------------------

def test_serving_model_is_the_latest_cut_strictly_before_the_day():
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2012-01-02", "2018-12-31")
    for _ in range(50):
        cuts = pd.DatetimeIndex(sorted({pd.Timestamp("2011-12-31"),
                                        *rng.choice(days, int(rng.integers(0, 20)), replace=False)}))
        index = serving_model(days, cuts)
        assert (cuts[index] < days).all()  # never a model cut on or after the day
        later = np.minimum(index + 1, len(cuts) - 1)
        assert ((index == len(cuts) - 1) | (cuts[later] >= days)).all()  # and no newer model was ready
    with pytest.raises(ValueError):
        serving_model(days, pd.to_datetime(["2012-01-02"]))  # a cut on the first day cannot serve it


def test_alert_fires_as_the_rule_says():
    rule = retrain_study.alert_rule()
    assert rule["alert"] == "MarketAbInputDrift" and rule["for_seconds"] > 0
    gap = retrain_study.JUDGE_EVERY * 86400
    assert judgements_to_fire(rule["for_seconds"], gap) == (1 if rule["for_seconds"] <= gap else 2)
    assert alert_episodes([True, True, False, True, False, False, True, True]) == [(3, 3, 3), (6, 7, 6)]
    assert alert_episodes([False, True, True, False], to_fire=3) == [(1, 2, None)]


def test_one_retraining_per_episode_at_most_and_the_cooldown_holds():
    # positions in trading days; cooldown 63
    flagged = [0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1]
    positions = [0, 20, 25, 30, 40, 60, 70, 80, 100, 140, 200]
    episodes = drift_retrainings(flagged, positions, cooldown=63)
    assert [(e.start, e.end, e.retrained) for e in episodes] == [(1, 2, None), (4, 6, 6), (8, 8, None),
                                                                 (10, 10, 10)]
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 120))
        flagged = rng.random(n) < rng.uniform(0.05, 0.6)
        positions = np.arange(n) * 5
        cooldown, to_fire = int(rng.choice([0, 20, 63])), int(rng.integers(1, 3))
        episodes = drift_retrainings(flagged, positions, cooldown, to_fire)
        cuts = [positions[0]]
        for e in episodes:
            assert e.start > 0 and not flagged[e.start - 1] and flagged[e.start:e.end + 1].all()
            if e.retrained is None:  # nowhere after it fired was the cooldown over
                assert e.fired is None or all(positions[i] - cuts[-1] < cooldown for i in range(e.fired, e.end + 1))
                continue
            assert e.fired is not None and e.fired <= e.retrained <= e.end
            assert positions[e.retrained] - cuts[-1] >= cooldown
            cuts.append(positions[e.retrained])
        starts = [e.start for e in episodes]
        assert len(starts) == len(set(starts))  # one entry, so at most one retraining, per episode


# (c) what a retrained model sees ----------------------------------------------------------------------------------

def test_retraining_data_end_at_the_cut_and_testing_starts_after_it():
    cut = pd.Timestamp("2014-06-30")
    dataset = training_data("2014-06-30")
    assert dataset.dates == retrain_study.SplitDates.walk_forward("2014-06-30")
    for split in ("train", "validation"):
        assert len(dataset[split]) and dataset[split].label_date.max() <= cut, split
    assert dataset["test"].date.min() > cut
    assert str(dataset["test"].date.min())[:10] == "2014-07-01"  # the next trading day: no gap after the cut


def test_every_policy_predicts_the_same_days():
    days = predicted_days()
    assert set(days.instrument) == {"sp500", "nasdaq"}
    assert str(days.date.min())[:10] == "2012-01-03" and str(days.date.max())[:10] == "2018-12-28"
    assert (days.date > pd.Timestamp(NEVER_CUT)).all()


# statistics ------------------------------------------------------------------------------------------------------

def test_statistics():
    assert max_drawdown([0.1, -0.5, 0.2]) == pytest.approx(0.5)
    assert max_drawdown([0.01, 0.02]) == 0.0
    rng = np.random.default_rng(2)
    outcome = {"day": np.arange(300), "correct": rng.integers(0, 3, 300) / 2, "strategy": rng.normal(0, 0.01, 300)}
    same = paired_difference(outcome, outcome, block=20, reps=200)
    assert same["accuracy"] == 0 and same["accuracy_ci"] == [0.0, 0.0] and same["sharpe_ci"] == [0.0, 0.0]
    better = {**outcome, "correct": np.minimum(outcome["correct"] + 0.5, 1)}
    assert paired_difference(better, outcome, block=20, reps=200)["accuracy_ci"][0] > 0
    assert paired_difference(better, outcome, 20, 200) == paired_difference(better, outcome, 20, 200)  # seeded
    with pytest.raises(ValueError):
        paired_difference({**outcome, "day": np.arange(1, 301)}, outcome, 20, 200)


def test_doctests_of_the_module():
    assert doctest.testmod(retrain_study).failed == 0
