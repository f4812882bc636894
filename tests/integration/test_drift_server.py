"""The drift detector in a real MLServer: verdicts on real market rows and on injected shifts, both window modes,
every row of a request judged, bad input, metrics in both worker modes, and webhook alerts received by a real HTTP
server."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pandas as pd
import pytest

from seldon_market_ab.analysis import drift_shifts
from seldon_market_ab.client import InferenceClient, RestError
from seldon_market_ab.detectors.reference import Reference
from seldon_market_ab.detectors.settings import DriftSettings
from seldon_market_ab.features import FEATURE_NAMES, WARMUP
from seldon_market_ab.local_seldon.mlserver_process import MLServerProcess
from seldon_market_ab.training.data import load_instrument
from seldon_market_ab.training.dataset import ohlcv_windows

from ..conftest import MODELS, rest_body, running
from .test_metrics import scrape, value

DETECTOR = "drift-detector"
REFERENCE = Reference.load(MODELS / DETECTOR)
WINDOW = json.loads((MODELS / DETECTOR / "model-settings.json").read_text())["parameters"]["extra"]["window_size"]
LONGEST = DriftSettings().max_window_size
CHEAP_TESTS = "ks,cvm,psi"


def null_window(seed: int, rows: int = WINDOW) -> np.ndarray:
    """Held-out rows of the reference period, drawn at random: no drift by construction, for the i.i.d. tests."""
    rng = np.random.default_rng(seed)
    return REFERENCE.heldout[rng.choice(len(REFERENCE.heldout), rows, replace=False)]


def ordinary_window(seed: int, rows: int = WINDOW) -> np.ndarray:
    """Consecutive trading days of an index in the reference period, at a random position: what the series tests
    call ordinary (they flag 5% of the period's windows by construction; fewer of the indices', more of GOOG's)."""
    rng = np.random.default_rng(seed)
    segments = dict(zip(REFERENCE.metadata["series_instruments"], REFERENCE.segments(), strict=True))
    segment = segments[("sp500", "nasdaq")[rng.integers(2)]]
    start = int(rng.integers(0, len(segment) - rows + 1))
    return segment[start:start + rows]


def crisis_window(start: str = "2008-09-15", rows: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Raw OHLCV windows of the S&P 500 ending on each trading day from ``start`` (autumn 2008), and the dates."""
    return market_window("sp500", start, rows)


def market_window(instrument: str, start: str, rows: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    frame = load_instrument(instrument)
    ends = np.flatnonzero(frame.index >= pd.Timestamp(start))[:rows]
    dates = np.array([str(d)[:10] for d in frame.index[ends]])
    return ohlcv_windows(instrument, ends, WARMUP + 1), dates


def quarter_to(instrument: str, last_day: str, rows: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Raw OHLCV windows of the ``rows`` trading days to ``last_day``, and their dates."""
    frame = load_instrument(instrument)
    end = int(np.flatnonzero(frame.index <= pd.Timestamp(last_day))[-1])
    return market_window(instrument, str(frame.index[end - rows + 1])[:10], rows)


def shifted_quarter(shift, instrument: str = "sp500", last_day: str = "2013-05-31") -> np.ndarray:
    """OHLCV windows of a calm quarter (the S&P 500's 60 days to May 2013) with ``shift(prices, first day)``
    applied to its prices: the shifted history each day's window holds."""
    frame = load_instrument(instrument)
    end = int(np.flatnonzero(frame.index <= pd.Timestamp(last_day))[-1])
    prices = shift(frame.to_numpy()[end - WINDOW + 1 - WARMUP:end + 1], WARMUP)
    return np.stack([prices[i:i + WARMUP + 1] for i in range(WINDOW)]).astype(np.float32)


class Webhook:
    """A real HTTP server that records JSON events; ``hold`` makes it keep each request open until released."""

    def __init__(self, hold: bool = False, status: int = 200):
        self.events: list[dict] = []
        self.received = threading.Event()
        self.arrived = threading.Condition()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.arrived:
                    owner.events.append(json.loads(body))
                    owner.arrived.notify_all()
                owner.received.set()
                owner.release.wait(60)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


def add_detector(repository, name: str, **extra):
    folder = repository / name
    shutil.copytree(MODELS / DETECTOR, folder)
    settings = json.loads((folder / "model-settings.json").read_text())
    settings["name"] = name
    settings["parameters"]["extra"].update(extra)
    (folder / "model-settings.json").write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def hooks():
    alive, down = Webhook(), Webhook(hold=True, status=500)
    yield alive, down
    alive.close()
    down.close()


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, hooks):
    """One in-process MLServer: the shipped detector, one with i.i.d. calibration, a rolling one, one fed row by
    row for its online detector, and two that alert."""
    alive, down = hooks
    repository = tmp_path_factory.mktemp("drift")
    shutil.copytree(MODELS / DETECTOR, repository / DETECTOR)
    add_detector(repository, "drift-iid", calibration="iid", tests="ks,cvm,mmd,psi")
    add_detector(repository, "drift-rolling", evaluate_every=50)
    add_detector(repository, "drift-online", calibration="iid", tests="ks,psi", ensemble_k=1)
    add_detector(repository, "drift-alerting", calibration="iid", tests=CHEAP_TESTS, online=False,
                 webhook_url=alive.url, webhook_debounce_seconds=0)
    add_detector(repository, "drift-dead-hook", calibration="iid", tests=CHEAP_TESTS, online=False,
                 webhook_url=down.url, webhook_debounce_seconds=0, webhook_retries=1,
                 webhook_timeout_seconds=120)
    with MLServerProcess(repository, parallel_workers=0) as server:
        client = InferenceClient(server.grpc_address, server.http_url)
        yield server, client
        client.close()


@pytest.mark.parametrize(("model", "window"), [(DETECTOR, ordinary_window), ("drift-iid", null_window)])
def test_ordinary_windows_mostly_pass(detectors, model, window):
    """The shipped detector on consecutive days of the reference period, the i.i.d. one on rows drawn at random:
    each flags about 5% of what it was calibrated on."""
    _, client = detectors
    verdicts = [client.infer_grpc(model, {"features": window(seed)}) for seed in range(20)]
    assert all(v["evaluated"][0] == 1 and v["window_rows"][0] == WINDOW for v in verdicts)
    assert sum(int(v["is_drift"][0]) for v in verdicts) <= 3


def test_a_crisis_window_is_flagged_from_raw_prices(detectors):
    """Autumn 2008 against the i.i.d. null: every test flags it, volatility first."""
    _, client = detectors
    ohlcv, dates = crisis_window()
    result = client.infer_grpc("drift-iid", {"ohlcv": ohlcv, "dates": dates})
    assert result["is_drift"][0] == 1 and result["evaluated"][0] == 1
    assert list(result["test_names"]) == ["ks", "cvm", "mmd", "psi"]
    assert result["test_is_drift"].tolist() == [1, 1, 1, 1]
    assert result["window_rows"][0] == WINDOW
    ranked = result["drifted_features"]
    assert any(name.startswith("vol_") for name in ranked[:8]), ranked
    psi = dict(zip(FEATURE_NAMES, result["feature_psi"], strict=True))
    assert max(psi.values()) >= 0.25


@pytest.mark.parametrize("instrument", ["sp500", "nasdaq"])
def test_the_2008_crash_is_flagged_on_both_indices(detectors, instrument):
    """The 60 trading days to 2008-12-31 lie inside the reference period and still rank among its most unusual
    windows; volatility is what moved most."""
    _, client = detectors
    ohlcv, dates = quarter_to(instrument, "2008-12-31")
    result = client.infer_grpc(DETECTOR, {"ohlcv": ohlcv, "dates": dates})
    assert list(result["test_names"]) == ["shift", "feed"]
    assert result["is_drift"][0] == 1 and result["test_is_drift"].tolist() == [1, 0], result["test_p_value"]
    moved = [FEATURE_NAMES[j] for j in np.argsort(result["feature_p_value"])[:6]]
    assert any("vol" in name for name in moved), moved


def test_a_six_fold_volatility_is_flagged_and_the_calm_quarter_is_not(detectors):
    _, client = detectors
    calm = client.infer_grpc(DETECTOR, {"ohlcv": shifted_quarter(lambda prices, onset: prices)})
    assert calm["is_drift"][0] == 0, calm["test_p_value"]
    stormy = client.infer_grpc(DETECTOR, {"ohlcv": shifted_quarter(
        lambda prices, onset: drift_shifts.volatility(prices, 6.0, onset))})
    assert stormy["is_drift"][0] == 1 and stormy["test_p_value"][0] < 0.01
    vol = FEATURE_NAMES.index("vol_20")
    assert stormy["feature_z"][vol] > calm["feature_z"][vol] + 2


def test_a_broken_feed_is_flagged_and_the_feature_named(detectors):
    """A feed that sent only the close for the last 5 days: no day of the reference period had no range."""
    _, client = detectors
    result = client.infer_grpc(DETECTOR, {"ohlcv": shifted_quarter(
        lambda prices, onset: drift_shifts.close_only(prices, len(prices) - 5))})
    assert result["is_drift"][0] == 1 and result["test_is_drift"][1] == 1
    assert result["test_distance"][1] == 5  # broken rows
    assert {"range_pct", "close_location"} <= set(result["drifted_features"])


def test_rest_and_grpc_give_the_same_verdict(detectors):
    _, client = detectors
    window = ordinary_window(100)
    over_rest = client.infer_rest(DETECTOR, {"features": window})
    over_grpc = client.infer_grpc(DETECTOR, {"features": window})
    for output in ("is_drift", "test_p_value", "test_distance", "feature_p_value", "feature_z"):
        np.testing.assert_allclose(over_rest[output], over_grpc[output])


def test_small_requests_roll_into_a_window(detectors):
    """Rows arrive ten at a time; the window is tested once full, then every ``evaluate_every`` rows."""
    _, client = detectors
    rows = ordinary_window(7, WINDOW + 50)
    evaluated, window_rows = [], []
    for start in range(0, len(rows), 10):
        result = client.infer_grpc("drift-rolling", {"features": rows[start:start + 10]})
        evaluated.append(int(result["evaluated"][0]))
        window_rows.append(int(result["window_rows"][0]))
        assert result["online_is_drift"].shape == (1,)
    full = WINDOW // 10
    assert evaluated == [0] * (full - 1) + [1] + [0] * 4 + [1]
    assert window_rows[:full] == list(range(10, WINDOW + 10, 10)) and set(window_rows[full:]) == {WINDOW}
    # the last test saw the last WINDOW rows, exactly as one whole-window request of them does
    whole = client.infer_grpc("drift-rolling", {"features": rows[-WINDOW:]})
    np.testing.assert_allclose(result["feature_p_value"], whole["feature_p_value"])


def test_the_online_detector_follows_a_stream_into_a_crisis(detectors):
    """Rows one request at a time: 60 held-out rows, then the 60 trading days from October 2008."""
    _, client = detectors
    null_rows = null_window(11, 60)
    ohlcv, _ = crisis_window("2008-10-01", rows=60)
    calm = [int(client.infer_grpc("drift-online", {"features": row[None]})["online_is_drift"][0]) for row in null_rows]
    crisis = [int(client.infer_grpc("drift-online", {"ohlcv": window[None]})["online_is_drift"][0])
              for window in ohlcv]
    assert sum(calm) <= 5 and sum(crisis) >= 30, (calm, crisis)


# (case, inputs, expected words); each goes out over REST and gRPC.
BAD = [
    ("NaN", {"features": np.where(np.eye(WINDOW, len(FEATURE_NAMES)) > 0, np.nan, 0).astype(np.float32)},
     "holds NaN or Inf"),
    ("wrong width", {"features": np.zeros((5, 7), np.float32)}, f"must have shape [n, {len(FEATURE_NAMES)}]"),
    ("window too short", {"ohlcv": np.ones((1, 20, 5), np.float32)}, f"at least {WARMUP + 1} are needed"),
    ("empty batch", {"features": np.zeros((0, len(FEATURE_NAMES)), np.float32)}, "empty batch"),
    ("dates do not match", {"features": np.zeros((3, len(FEATURE_NAMES)), np.float32),
                            "dates": np.array(["2020-01-01"])}, "'dates' has 1 values for 3 rows"),
    ("unknown input", {"prices": np.zeros((3, 5), np.float32)}, "expected one input: 'ohlcv' FP32"),
    ("too many rows", {"features": np.zeros((LONGEST + 1, len(FEATURE_NAMES)), np.float32)},
     f"this detector judges windows of {WINDOW} to {LONGEST} rows"),
]


@pytest.mark.parametrize(("case", "inputs", "expected"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_input_is_a_client_error(detectors, case, inputs, expected):
    _, client = detectors
    with pytest.raises(grpc.RpcError) as error:
        client.infer_grpc(DETECTOR, inputs)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert expected in error.value.details()
    with pytest.raises(RestError) as rest_error:
        body = rest_body(inputs) if "dates" not in inputs else None
        client.infer_rest(DETECTOR, inputs if body is None else None, body=body)
    assert rest_error.value.status == 400, rest_error.value.message
    assert expected in rest_error.value.message
    assert client.infer_grpc(DETECTOR, {"features": null_window(0, 20)})["window_rows"][0] > 0  # still serving


def test_verdict_changes_reach_the_webhook(detectors, hooks):
    _, client = detectors
    alive, _ = hooks
    client.infer_grpc("drift-alerting", {"features": null_window(1)})  # no drift: no change, no event
    ohlcv, dates = crisis_window()
    client.infer_grpc("drift-alerting", {"ohlcv": ohlcv, "dates": dates})  # drift: an event
    client.infer_grpc("drift-alerting", {"features": null_window(2)})  # back to no drift: another event
    with alive.arrived:
        assert alive.arrived.wait_for(lambda: len(alive.events) >= 2, timeout=60), alive.events
    onset, recovery = alive.events[:2]
    assert onset["model"] == "drift-alerting" and onset["drift"] is True and onset["previous"] is False
    assert onset["window"] == {"rows": WINDOW, "first_date": dates[0], "last_date": dates[-1]}
    assert onset["drifted_features"] and set(onset["drifted_features"]) <= set(FEATURE_NAMES)
    assert set(onset["tests"]) == {"ks", "cvm", "psi"} and onset["tests"]["ks"]["drift"] is True
    assert recovery["drift"] is False and recovery["window"]["first_date"] is None


def test_a_dead_webhook_does_not_hold_up_the_reply(detectors, hooks):
    """The webhook keeps the alert's request open (its timeout is 120 s): a reply that waited for it would
    exceed the 30 s call deadline. Once released it answers 500, and the failed alert is counted."""
    server, client = detectors
    _, down = hooks
    ohlcv, dates = crisis_window()
    result = client.infer_grpc("drift-dead-hook", {"ohlcv": ohlcv, "dates": dates}, timeout=30)
    assert result["is_drift"][0] == 1
    assert down.received.wait(30), "the alert never reached the webhook"
    assert not down.release.is_set()  # the reply came back while the alert was still in flight
    down.release.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        samples, _ = scrape(server)
        if value(samples, "market_ab_drift_alerts_total", model="drift-dead-hook", outcome="failed") >= 1:
            break
        time.sleep(0.1)
    assert value(samples, "market_ab_drift_alerts_total", model="drift-dead-hook", outcome="failed") == 1
    assert len(down.events) == 2  # the first attempt and one retry


@pytest.fixture(scope="module")
def detector_in_workers(tmp_path_factory):
    repository = tmp_path_factory.mktemp("drift-workers")
    shutil.copytree(MODELS / DETECTOR, repository / DETECTOR)
    with MLServerProcess(repository, parallel_workers=2) as server:
        client = InferenceClient(server.grpc_address, server.http_url)
        yield server, client
        client.close()


@pytest.mark.parametrize("mode", ["workers-0", "workers-2"])
def test_metrics_appear_in_both_worker_modes(request, mode):
    server, client = request.getfixturevalue("detectors" if mode == "workers-0" else "detector_in_workers")
    before, _ = scrape(server)
    ohlcv, _ = quarter_to("sp500", "2008-12-31")
    result = client.infer_grpc(DETECTOR, {"ohlcv": ohlcv})
    after, text = scrape(server)
    windows = "market_ab_drift_windows_total"
    assert value(after, windows, model=DETECTOR, verdict="drift") == value(before, windows, model=DETECTOR,
                                                                           verdict="drift") + 1
    assert value(after, "market_ab_drift_is_drift", model=DETECTOR) == 1
    for test, drift in zip(result["test_names"], result["test_is_drift"], strict=True):
        assert value(after, "market_ab_drift_test_is_drift", model=DETECTOR, test=test) == drift
    assert value(after, "market_ab_drift_test_seconds_count", model=DETECTOR, test="shift") >= 1
    for feature in ("close_location", "vol_20"):
        j = FEATURE_NAMES.index(feature)
        assert value(after, "market_ab_drift_feature_z", model=DETECTOR, feature=feature) == pytest.approx(
            result["feature_z"][j])
        assert value(after, "market_ab_drift_feature_p_value", model=DETECTOR, feature=feature) == pytest.approx(
            result["feature_p_value"][j])
    features = {s.split('feature="')[1].split('"')[0] for s in text.splitlines()
                if s.startswith("market_ab_drift_feature_z{") and f'model="{DETECTOR}"' in s}
    assert features == set(FEATURE_NAMES)  # a fixed set from the artifact, never from requests


def test_tests_run_in_a_lower_priority_process_that_leaves_with_its_server(tmp_path):
    repository = tmp_path / "models"
    shutil.copytree(MODELS / DETECTOR, repository / DETECTOR)
    server = MLServerProcess(repository, parallel_workers=0).start()
    try:
        testers = [pid for pid in server.process_tree()
                   if pid != server.pid and os.sched_getscheduler(pid) == os.SCHED_IDLE]
        assert len(testers) == 1, server.process_tree()
        client = InferenceClient(server.grpc_address)
        assert client.infer_grpc(DETECTOR, {"features": ordinary_window(3)})["evaluated"][0] == 1
        client.close()
        exited = os.pidfd_open(testers[0])  # readable once the process has exited
        os.kill(server.pid, signal.SIGKILL)  # the server alone: nothing can stop its children for it
        readable, _, _ = select.select([exited], [], [], 30)
        os.close(exited)
        assert readable and not running(testers[0]), "the test process outlived its server"
    finally:
        server.stop()


@pytest.mark.parametrize("rows", [2 * WINDOW, LONGEST])
def test_every_row_of_a_longer_request_is_judged(detectors, rows):
    """A request of up to LONGEST rows is judged on all of them, against the reference period's windows of that
    size: its last WINDOW rows alone get other p-values."""
    _, client = detectors
    window = ordinary_window(11, rows)
    result = client.infer_grpc(DETECTOR, {"features": window})
    assert result["window_rows"][0] == rows and result["evaluated"][0] == 1
    late = client.infer_grpc(DETECTOR, {"features": window[-WINDOW:]})
    assert late["window_rows"][0] == WINDOW
    assert not np.allclose(late["feature_p_value"], result["feature_p_value"])  # not the last WINDOW rows alone
    assert client.infer_grpc("drift-iid", {"features": null_window(11, rows)})["window_rows"][0] == rows
