"""The main job (``market-ab demo``, what ``make demo`` runs): ``market-ab serve`` with the demo's experiments beside
the manifests, Locust traffic through each, and a report built from that run only (``reports/<run>/``).

Experiments, in order:

- ``aa-test`` (A/A): baseline against ``baseline-copy``, the same artifact under another name, 50/50: any "win" is
  a false positive.
- ``ab-test`` (A/B): the manifests' experiment, baseline 70 / enhanced 30, mirrored to lightweight.
- ``mab`` and ``contextual`` (A/B by a router): the pipelines; the routers' logged propensities give off-policy
  estimates.
- ``fault-test`` (faulty): baseline against ``faulty``, the baseline artifact served by
  ``seldon_market_ab.runtimes.faults.FaultyLSTMRuntime`` with ``FAULT`` injected, 50/50: the guardrails must roll it
  back.
- ``retrain-rollout`` (retraining): the drift alert turned into a new version. Alertmanager routes
  ``MarketAbInputDrift`` to the alert receiver, which records a retraining request; the replayed days themselves make
  the detector fire during the router pipelines (their side step sends it every window); if none has by this segment,
  the S&P 500's last 60 days of 2008 are sent to the detector instead, and the report says which. The segment runs
  ``market-ab retrain lightweight --alert KEY`` for that request (what ``market-ab serve --on-retrain`` runs as the
  request arrives; here it begins with the segment, so that its rollout meets the segment's traffic). Once the new
  version is applied, traffic for ``lightweight`` (which its Experiment now splits) flows while its rollout runs; the
  timeline goes into the report. The version is trained up to a cut before the first replayed
  day, so neither its comparison nor the rollout's traffic is on a day it saw.
- ``faulty-rollout`` and ``enhanced-rollout`` (rollout): from the baseline alone, ``market-ab rollout`` (in a thread)
  moves the candidate's weight by ``ROLLOUT`` while the traffic flows: the faulty one must be rolled back by it, with
  its exposure counted; ``enhanced`` goes as far as the evidence takes it, and a rollout still undecided when the
  traffic ends is ended aborted, saying so.

The stack runs its Prometheus, with the manifests' alert rules (``for:`` capped at ``ALERT_FOR``). After each
experiment the demo waits until Prometheus has scraped every acknowledged outcome, so that each arm's live counts
come three ways (Locust log, outcomes store, Prometheus) and are checked against each other; at the end it reads the
alerts that fired and every dashboard panel's series over the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from seldon_market_ab.analysis import live_metrics, retrain_report, rollout_report
from seldon_market_ab.analysis.ab_analysis import BusinessModel, DecisionPolicy
from seldon_market_ab.analysis.report import ExperimentRun, analyse, log_entries, look_at, read_log, write_report
from seldon_market_ab.client import InferenceClient
from seldon_market_ab.features import WARMUP
from seldon_market_ab.local_seldon.deployment import Deployment
from seldon_market_ab.local_seldon.manifests import load_documents
from seldon_market_ab.local_seldon.prometheus import PrometheusAPI
from seldon_market_ab.local_seldon.repository import SETTINGS_FILE, model_folders
from seldon_market_ab.local_seldon.serve_process import ServeProcess
from seldon_market_ab.retraining.commands import LEDGER, ledger_records
from seldon_market_ab.retraining.templates import DEFAULT_TEMPLATE
from seldon_market_ab.rollouts.audit import AuditLog
from seldon_market_ab.rollouts.document import Rollout, seconds
from seldon_market_ab.rollouts.runner import Display, RolloutRunner, Stop
from seldon_market_ab.rollouts.targets import LocalAdmin
from seldon_market_ab.routers.settings import StoreSettings
from seldon_market_ab.routers.stores import StateStore, open_store
from seldon_market_ab.runtimes.artifact import LSTMArtifact
from seldon_market_ab.training.data import load_instrument
from seldon_market_ab.training.dataset import heldout_days, ohlcv_windows

FAULT = {"added_latency_ms": 30.0, "failure_rate": 0.1}  # the faulty candidate's injected fault
DEMO_EXPERIMENTS = [
    {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "aa-test"},
     "spec": {"candidates": [{"name": "baseline", "weight": 50}, {"name": "baseline-copy", "weight": 50}]}},
    {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "fault-test"},
     "spec": {"candidates": [{"name": "baseline", "weight": 50}, {"name": "faulty", "weight": 50}]}},
    # where `market-ab rollout` moves the weights, from the baseline alone
    *({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": {"name": f"{candidate}-rollout"},
       "spec": {"candidates": [{"name": "baseline", "weight": 100}, {"name": candidate, "weight": 0}]}}
      for candidate in ("faulty", "enhanced")),
]
# the demo's rollouts, sized to its traffic (an experiment's traffic ends long before maxDuration)
ROLLOUT = {"steps": [25, 50, 75], "interval": "1s", "minOutcomes": 20, "maxDuration": "10m"}
ALERT_FOR, SCRAPE_INTERVAL = "5s", "2s"  # alerts can fire within a few minutes' run; expressions unchanged
SETTLE_SECONDS = 60.0  # how long Prometheus may take to scrape what was acknowledged, or fire the expected alerts
DASHBOARD = Path(__file__).resolve().parents[1] / "manifests" / "base" / "monitoring" / "market-ab-dashboard.json"
RETRAIN_VARIANT = "lightweight"  # the model a drift alert retrains (the quickest to train)
RETRAIN_WAIT_SECONDS = 600.0  # from the alert to the new version applied: for:, Alertmanager, training, loading
# the new version's rollout decides within the segment: without evidence either way by then, it keeps the serving one
RETRAIN_ROLLOUT = {**ROLLOUT, "maxDuration": "45s"}
RUNS = [("aa-test", "aa", "aa-test.experiment", None), ("ab-test", "ab", "ab-test.experiment", None),
        ("mab", "ab", "mab.pipeline", "thompson-router"), ("contextual", "ab", "contextual.pipeline", "regime-router"),
        ("retrain-rollout", "retrain", RETRAIN_VARIANT, None),
        ("fault-test", "faulty", "fault-test.experiment", None),
        ("faulty-rollout", "rollout", "faulty-rollout.experiment", None),
        ("enhanced-rollout", "rollout", "enhanced-rollout.experiment", None)]


def demo_repository(models_dir: Path, folder: Path, seed: int, only: set[str] | None = None,
                    copied: set[str] = frozenset()) -> Path:
    """``models_dir`` (or the models ``only`` names) linked into ``folder``, with ``baseline-copy`` and ``faulty``
    beside it; the models ``copied`` names are copies (a retraining writes its versions into them)."""
    models_dir = Path(models_dir).resolve()
    folder.mkdir(parents=True)
    for entry in models_dir.iterdir():
        if entry.name in copied:
            shutil.copytree(entry, folder / entry.name, ignore=shutil.ignore_patterns("versions"))
        elif only is None or entry.name in only:
            (folder / entry.name).symlink_to(entry)
    settings = json.loads((models_dir / "baseline" / SETTINGS_FILE).read_text())
    for name, changes in (("baseline-copy", {}),
                          ("faulty", {"implementation": "seldon_market_ab.runtimes.faults.FaultyLSTMRuntime"})):
        (folder / name).mkdir()
        for entry in (models_dir / "baseline").iterdir():
            if entry.name != SETTINGS_FILE:
                (folder / name / entry.name).symlink_to(entry)
        copy = {**settings, "name": name, **changes}
        if name == "faulty":
            copy["parameters"] = {**settings["parameters"], "extra": {**settings["parameters"].get("extra", {}),
                                                                      **FAULT, "fault_seed": seed}}
        (folder / name / SETTINGS_FILE).write_text(json.dumps(copy, indent=2))
    return folder


def run_experiments(models_dir: Path, manifests: list[Path], reports_dir: Path, days: int = 120, workers: int = 4,
                    seconds: float = 300.0, seed: int = 0, feedback_delay: float = 0.5, run: str | None = None,
                    keep_logs: bool = True) -> Path:
    run = run or time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="market-ab-demo-"))
    repository = demo_repository(models_dir, workdir / "models", seed, copied={RETRAIN_VARIANT})
    extra = workdir / "demo-experiments.yaml"
    extra.write_text(yaml.safe_dump_all(DEMO_EXPERIMENTS))
    deployment = Deployment.from_documents(load_documents([*manifests, extra]))
    state_dir = workdir / "state"
    out = reports_dir / run
    logs = out / "logs" if keep_logs else workdir / "logs"  # by default the raw logs stay beside their report
    logs.mkdir(parents=True)
    windows: list[dict] = []
    serve = ServeProcess(repository, [*manifests, extra], seed=seed, log_path=workdir / "serve.log", prometheus=True,
                         alertmanager=True,
                         extra_args=["--state-dir", str(state_dir), "--alert-for", ALERT_FOR, "--scrape-interval",
                                     SCRAPE_INTERVAL, "--prometheus-dir", str(workdir / "prometheus")])
    serve.extra_args += ["--alerts-dir", str(workdir / "alerts")]
    with serve:
        prometheus = PrometheusAPI(serve.prometheus_url)
        outcomes = model_store(repository, deployment, "outcomes", state_dir)
        run_started = time.time()
        try:
            experiments = run_all(serve, outcomes, prometheus, logs, deployment, state_dir, windows, days, workers,
                                  seconds, feedback_delay, models_dir)
        finally:
            outcomes.close()
        drift = drift_verdicts(serve, days, models_dir)
        wait_for_alerts(prometheus, [("MarketAbErrorRate", "faulty"), ("MarketAbLatencyHigh", "faulty")])
        run_ended = time.time()
        step = max(2.0, (run_ended - run_started) / 1000)  # within Prometheus's 11,000 points per series
        seen = {"scrape_interval": SCRAPE_INTERVAL, "alert_for": ALERT_FOR, "windows": windows,
                "alerts": live_metrics.firing_alerts(prometheus, run_started, run_ended, step)}
        panels = live_metrics.dashboard_series(prometheus, json.loads(DASHBOARD.read_text()), run_started,
                                               run_ended, step)
    out.mkdir(parents=True, exist_ok=True)
    dashboard = {"the dashboard's panels": live_metrics.draw_dashboard(panels, out / "dashboard.png", run_started)}
    settings = (f"{days} held-out days per instrument, each sent once (at most {seconds:g} s per experiment), "
                f"{workers} Locust users, feedback after {feedback_delay:g} s, seed {seed}")
    report = {"run": run, "scenarios": days, "workers": workers, "seed": seed, "settings": settings, "fault": FAULT,
              "policy": DecisionPolicy().__dict__,
              "business_model": BusinessModel().__dict__, "experiments": experiments, "drift": drift,
              "prometheus": seen}
    write_report(out, report, dashboard)
    return out


def run_demo(models_dir: Path, scenarios: int = 250, workers: int = 4, manifests: list[Path] | None = None,
             reports_dir: Path = Path("reports"), seed: int = 0, run: str | None = None, keep_logs: bool = True) -> int:
    from seldon_market_ab.training.report import load_metadata, text_table
    from seldon_market_ab.training.train import train_models
    from seldon_market_ab.training.variants import VARIANTS

    missing = [n for n in VARIANTS if not (Path(models_dir) / n / "model.pt").exists()]
    if missing:
        print(f"training {', '.join(missing)} into {models_dir}/ (a few minutes on 2 cores)")
        train_models(missing, models_dir)
    print("Test-period evaluation stored with each model (market-ab evaluate):")
    print(text_table(load_metadata(models_dir), "test"))
    manifests = manifests or [Path(__file__).resolve().parents[1] / "manifests" / "overlays" / "dev"]
    print(f"\nmarket-ab serve on {', '.join(map(str, manifests))} and the demo's experiments; {scenarios} held-out "
          f"days per instrument through each, {workers} Locust users (REST and gRPC)")
    out = run_experiments(models_dir, manifests, reports_dir, days=scenarios, workers=workers, seed=seed, run=run,
                          keep_logs=keep_logs)
    report = json.loads((out / "report.json").read_text())
    print(f"\n{'experiment':<18}{'kind':<9}{'sent':>6}{'failed':>8}{'rewards':>9}  recommendation")
    for experiment in report["experiments"]:
        counts = experiment["counts"]
        print(f"{experiment['name']:<18}{experiment['kind']:<9}{counts['sent']:>6}{counts['failed']:>8}"
              f"{counts['feedback_applied']:>9}  {experiment['recommendation']['decision']}: "
              f"{experiment['recommendation']['reasons'][0]}")
        if experiment.get("rollout"):
            rollout = experiment["rollout"]
            print(f"{'':<18}{'':<9}{'':>6}{'':>8}{'':>9}  market-ab rollout: {rollout['phase']} after "
                  f"{rollout['candidate_requests']} requests to {rollout['candidate']}: {rollout['reasons'][0]}")
    print(f"\nreport: {out / 'report.html'} (also report.md, report.json and the plots)")
    if shutil.which("chromium"):
        seen = look_at(out / "report.html")
        print(f"opened in headless Chromium: {seen['images_loaded']} of {seen['images']} plots loaded; screenshot "
              f"{seen['screenshot']}")
    return 0


def run_all(serve: ServeProcess, outcomes, prometheus: PrometheusAPI, logs: Path, deployment: Deployment,
            state_dir: Path, windows: list, days: int, workers: int, seconds: float, feedback_delay: float,
            models_dir: Path) -> list[dict]:
    """Each experiment of ``RUNS`` in turn: Locust traffic, its analysis, and its arms' live outcomes three ways
    (the log, the store, Prometheus once it has scraped them); ``windows`` gets each one's start and end."""
    experiments = []
    totals = settled_totals(outcomes, prometheus)
    for name, kind, target, router in tqdm(RUNS, desc="experiments", unit="experiment"):
        log = logs / f"{name}.jsonl"
        started = time.time()
        if kind == "retrain":
            experiments.append(run_retraining(serve, logs, state_dir.parent, serve.models_dir, days, workers,
                                              seconds, feedback_delay, models_dir, windows))
            after = settled_totals(outcomes, prometheus)
            experiments[-1]["live"] = live_metrics.live_summary(
                live_metrics.from_log(log_entries(log)), live_metrics.difference(after[0], totals[0]),
                live_metrics.difference(after[1], totals[1]))
            totals = after
            continue
        rollout = start_rollout(serve, deployment.experiments[name], logs) if kind == "rollout" else None
        try:
            drive(serve, target, router, log, days, workers, seconds, feedback_delay, models_dir)
        finally:  # also when the traffic failed: the rollout must not outlive it
            rolled = finish_rollout(*rollout) if rollout else None
        windows.append({"name": name, "start": started, "end": time.time()})
        # a rollout's split changes: no single configured split to hold the traffic to (its own check is below)
        weights = dict(deployment.experiments[name].candidates) if name in deployment.experiments and not rollout \
            else None
        experiment = ExperimentRun(name, kind, target, "baseline", weights, log, router)
        propensities = None
        if router:
            with closing(model_store(serve.models_dir, deployment, router, state_dir)) as store:
                propensities = logged_propensities(store, log)
        experiments.append(analyse(experiment, propensities, DecisionPolicy(), BusinessModel()))
        if rolled:
            experiments[-1]["rollout"] = rollout_report.summarise(
                rolled, read_log(log)[0], dict(deployment.experiments[name].candidates))
        after = settled_totals(outcomes, prometheus)
        experiments[-1]["live"] = live_metrics.live_summary(
            live_metrics.from_log(log_entries(log)), live_metrics.difference(after[0], totals[0]),
            live_metrics.difference(after[1], totals[1]))
        totals = after
    return experiments


def retrain_command(serve: ServeProcess, repository: Path, workdir: Path, days: int) -> list[str]:
    """``market-ab retrain`` of ``RETRAIN_VARIANT`` into the demo's repository, its cut before the first replayed
    day, its rollout sized like the demo's others (``--alert KEY`` to be appended)."""
    template = DEFAULT_TEMPLATE.read_text()
    rollout = next(d for d in yaml.safe_load_all(template) if d.get("kind") == "Rollout")
    for key in ("steps", "interval", "minOutcomes", "maxDuration"):
        template = template.replace(f"  {key}: {_yaml_value(rollout['spec'][key])}\n",
                                    f"  {key}: {_yaml_value(RETRAIN_ROLLOUT[key])}\n")
    (workdir / "retrain-template.yaml").write_text(template)
    return [str(Path(sys.executable).parent / "market-ab"), "retrain", RETRAIN_VARIANT, "--models-dir",
            str(repository), "--state-dir", str(workdir / "retrain"), "--template",
            str(workdir / "retrain-template.yaml"), "--holdout-days", str(days + 5), "--admin", serve.admin_url,
            "--prometheus", f"http://127.0.0.1:{serve.prometheus_port}", "--no-progress"]


def _yaml_value(value) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def run_retraining(serve: ServeProcess, logs: Path, workdir: Path, repository: Path, days: int, workers: int,
                   seconds: float, feedback_delay: float, models_dir: Path, windows: list) -> dict:
    """The retraining segment: the alert's retraining request (the replay's own, else 2008 sent to the detector),
    ``market-ab retrain`` for it, begun now so that its rollout meets this segment's traffic (``market-ab serve
    --on-retrain`` would begin it as the request arrives: tests/integration/test_retraining.py), traffic for
    ``RETRAIN_VARIANT`` while the rollout runs, its end, and the report's entry."""
    name, state = "retrain-rollout", workdir / "retrain"
    requests = alert_requests(serve, wait=0)
    what, sent_at = "real: the replayed days, which the pipelines' side step sends to the drift detector", None
    if not requests:
        what = "injected: the S&P 500's last 60 days of 2008 sent to the drift detector (real history, not the replay)"
        sent_at = time.time()
        client = InferenceClient(serve.grpc_address)
        client.infer("drift-detector", {"ohlcv": crash_windows()})
        client.close()
        requests = alert_requests(serve, wait=SETTLE_SECONDS * 2)
    if not requests:
        raise RuntimeError(f"no retraining request reached the trigger; see {serve.log_path}")
    request = requests[0]
    command = [*retrain_command(serve, repository, workdir, days), "--alert", request["key"]]
    with open(logs / f"{name}.retrain.log", "w") as output:
        retraining = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        ledger = wait_for_ledger(state / LEDGER, request["key"], retraining, RETRAIN_WAIT_SECONDS)
        log = logs / f"{name}.jsonl"
        started = time.time()
        drive(serve, RETRAIN_VARIANT, None, log, days, workers, seconds, feedback_delay, models_dir)
        windows.append({"name": name, "start": started, "end": time.time()})
        ledger = end_retraining(retraining, state / LEDGER, request["key"])
    finally:
        if retraining.poll() is None:  # the demo failed meanwhile: its rollout must not outlive it
            retraining.terminate()
            retraining.wait(150)
    experiment = analyse(ExperimentRun(name, "rollout", RETRAIN_VARIANT, RETRAIN_VARIANT, None, log, None),
                         None, DecisionPolicy(), BusinessModel())
    applied = next((line for line in ledger if line["event"] == "applied"), None)
    audit = []
    if applied is not None:  # else rejected: the new version was worse out of sample and took no traffic
        candidate = f"{RETRAIN_VARIANT}-v{applied['version']}"
        audit = AuditLog(state / f"{candidate}.audit.jsonl").current_run()
        experiment["rollout"] = rollout_report.summarise(audit, read_log(log)[0],
                                                         {RETRAIN_VARIANT: 100, candidate: 0})
    experiment["retraining"] = retrain_report.summarise(sent_at, request, ledger, audit, what)
    return experiment


def alert_requests(serve: ServeProcess, wait: float) -> list[dict]:
    """The retraining requests the alert receiver recorded (``wait``: seconds to wait for the first)."""
    url = f"{serve.admin_url}/alerts/retrain" + (f"?at_least=1&wait={wait:g}" if wait else "")
    return json.loads(urllib.request.urlopen(url, timeout=wait + 30).read())["requests"]


def _ledger(path: Path, alert: str) -> list[dict]:
    return [line for line in ledger_records(AuditLog(path)) if line.get("alert") == alert]


def wait_for_ledger(path: Path, alert: str, retraining: subprocess.Popen, timeout: float) -> list[dict]:
    """The retraining's ledger lines once its version is applied, or it ended without (rejected); RuntimeError when
    its process exited without either, or neither came within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        lines = _ledger(path, alert)
        if any(line["event"] in ("applied", "end") for line in lines):
            return lines
        if retraining.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the retraining for {alert} stopped before its version was applied "
                               f"({lines[-1:] or 'no line'}); see its log beside the report's logs")
        time.sleep(0.5)  # the ledger is a file another process appends to: read it again


def end_retraining(retraining: subprocess.Popen, path: Path, alert: str, timeout: float = 150.0) -> list[dict]:
    """Once the traffic has ended: the rollout decides by its maxDuration at the latest; one still undecided after
    that is ended aborted (SIGTERM: the retraining ends it with the serving version at 100). The ledger's lines for
    the alert, its end included."""
    try:
        retraining.wait(seconds(RETRAIN_ROLLOUT["maxDuration"]) + 30)
    except subprocess.TimeoutExpired:
        retraining.terminate()
        retraining.wait(timeout)
    lines = _ledger(path, alert)
    if not any(line["event"] == "end" for line in lines):
        raise RuntimeError(f"the retraining for {alert} exited with {retraining.returncode} without an end; see {path}")
    return lines


def start_rollout(serve: ServeProcess, experiment, logs: Path):
    """``market-ab rollout`` of the experiment's candidate, in a thread beside the traffic (its progress lines and
    audit log go to ``logs``)."""
    baseline, candidate = (name for name, _ in experiment.candidates)
    document = Rollout.model_validate({
        "apiVersion": "market-ab.io/v1alpha1", "kind": "Rollout", "metadata": {"name": experiment.name},
        "spec": {"experiment": experiment.name, "baseline": baseline, "candidate": candidate, **ROLLOUT,
                 "prometheus": serve.prometheus_url}})
    audit, stop = AuditLog(logs / f"{experiment.name}.audit.jsonl"), Stop()
    display = Display(open(logs / f"{experiment.name}.rollout.log", "w"))
    runner = RolloutRunner(document, LocalAdmin(experiment.name, serve.admin_url), audit, display=display, stop=stop)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as error:  # noqa: BLE001 - raised again, with its experiment, by finish_rollout
            failed.append(error)

    thread = threading.Thread(target=run, name=f"rollout-{experiment.name}", daemon=True)
    thread.start()
    return thread, stop, audit, display, failed


def finish_rollout(thread: threading.Thread, stop, audit: AuditLog, display, failed: list) -> list[dict]:
    """Once the traffic has ended: a rollout still undecided ends aborted, saying so; its audit log."""
    stop.reason = "the demo's traffic ended before a decision"
    stop.set()
    thread.join(180)
    if thread.is_alive():
        raise RuntimeError(f"the rollout of {thread.name} did not end within 180 s of the traffic; see {audit.path}")
    display.stream.close()
    if failed:
        raise RuntimeError(f"the rollout of {thread.name} failed: {failed[0]!r}; see {audit.path}") from failed[0]
    return audit.current_run()


def settled_totals(outcomes, prometheus: PrometheusAPI) -> tuple[dict, dict]:
    """The outcome totals per model in the store and in Prometheus, once Prometheus has scraped every outcome the
    store holds (at most ``SETTLE_SECONDS``; after that, what it has, and the report shows the difference)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        store, scraped = live_metrics.from_store(outcomes.counters()), live_metrics.from_prometheus(prometheus)
        if live_metrics.same_counts(store, scraped, 1e-6) or time.monotonic() > deadline:
            return store, scraped
        time.sleep(0.5)  # Prometheus scrapes on its own clock: ask again


def wait_for_alerts(prometheus: PrometheusAPI, expected: list[tuple[str, str]]) -> None:
    """Until the alerts ``(alertname, model)`` the run is expected to provoke fire, at most ``SETTLE_SECONDS`` (the
    report shows what did)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        # the ALERTS series, which the report reads, rather than the alerts API: it is written an evaluation later
        firing = {(row["metric"].get("alertname"), row["metric"].get("model"))
                  for row in prometheus.query('ALERTS{alertstate="firing"}')}
        if set(expected) <= firing:
            return
        time.sleep(0.5)


def crash_windows(instrument: str = "sp500", last_day: str = "2008-12-31", rows: int = 60) -> np.ndarray:
    """The last ``rows`` days of 2008 of ``instrument``, each with its feature warm-up: a window the detector flags."""
    frame = load_instrument(instrument)
    end = int(np.flatnonzero(frame.index <= np.datetime64(last_day))[-1])
    return ohlcv_windows(instrument, np.arange(end - rows + 1, end + 1), WARMUP + 1)


def drift_verdicts(serve: ServeProcess, days: int, models_dir: Path, window: int = 60, stride: int = 20) -> list[dict]:
    """The drift detector's verdict on the replayed period: windows of ``window`` consecutive days of one instrument,
    every ``stride`` days, sent to it through the gateway as a plain model (what the pipelines' side step sends it)."""
    rows = LSTMArtifact.load(Path(models_dir) / "baseline").min_window
    client = InferenceClient(serve.grpc_address)
    verdicts = []
    for instrument in ("sp500", "nasdaq"):
        replay = heldout_days((instrument,), days, rows)
        for end in range(window, len(replay) + 1, stride):
            part = replay[end - window:end]
            answer = client.infer("drift-detector", {"ohlcv": np.stack([d.ohlcv for d in part]),
                                                     "dates": np.array([d.date for d in part], dtype=object)})
            verdicts.append({"instrument": instrument, "first_date": part[0].date, "last_date": part[-1].date,
                             "is_drift": int(answer.outputs["is_drift"][0]),
                             "tests_drifted": int(np.sum(answer.outputs.get("test_is_drift", [0])))})
    client.close()
    return verdicts


def drive(serve: ServeProcess, target: str, router: str | None, log: Path, days: int, workers: int,
          seconds: float, feedback_delay: float, models_dir: Path) -> None:
    """Headless Locust, REST and gRPC users, through the gateway."""
    env = {**os.environ, "MARKET_AB_TARGET": target, "MARKET_AB_ROUTER": router or "",
           "MARKET_AB_GRPC": serve.grpc_address, "MARKET_AB_LOG": str(log), "MARKET_AB_DAYS": str(days),
           "MARKET_AB_FEEDBACK_DELAY": str(feedback_delay), "MARKET_AB_MODELS": str(models_dir)}
    locustfile = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"
    done = subprocess.run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(workers),
                           "-r", str(workers), "-t", f"{seconds:g}s", "--stop-timeout", "30", "--host", serve.http_url,
                           "--only-summary", "--loglevel", "WARNING"], capture_output=True, text=True, env=env,
                          timeout=seconds + 300)
    if done.returncode not in (0, 1):  # 1: some requests failed, which the faulty candidate is there to do
        raise RuntimeError(f"locust for {target} exited with {done.returncode}:\n{done.stderr[-3000:]}")


def model_store(repository: Path, deployment: Deployment, model: str, state_dir: Path) -> StateStore:
    """The store a model of the demo's stack (a router, the outcomes model) keeps its state in, as the model finds it:
    ``StoreSettings`` of its ``parameters.extra`` with its Model's ``spec.parameters`` over them (as ``market-ab
    serve`` merges them); by default SQLite under the stack's ``--state-dir``."""
    settings = json.loads((model_folders(repository)[model] / SETTINGS_FILE).read_text())
    extra = {**((settings.get("parameters") or {}).get("extra") or {}), **deployment.model_parameters.get(model, {})}
    config = StoreSettings.from_extra({key: extra[key] for key in StoreSettings.model_fields if key in extra}, model)
    # the stack gives its models --state-dir as $MARKET_AB_STATE_DIR, which this process does not have
    return open_store(config.store_url(model), model, config.state_dir or state_dir)


def logged_propensities(store: StateStore, log: Path) -> dict[str, float]:
    """What the router (``store``: its own) logged for each decision: the probability with which it chose the arm it
    chose."""
    requests, _ = read_log(log)
    decisions = {r["request_id"]: store.decision(r["request_id"]) for r in requests}
    return {rid: decision.propensity for rid, decision in decisions.items() if decision is not None}
