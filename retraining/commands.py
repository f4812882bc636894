"""``market-ab retrain VARIANT``: train a new version, compare it, register it and roll it out, once per alert.

The run, one line per stage in its log and in a ledger (``STATE_DIR/retrain.jsonl``, fsynced, read back on start):
``start`` (the alert, the plan) -> ``registered`` (version, training window, out-of-sample comparison) ->
``applied`` (the Model and Experiment) -> ``end`` (the rollout's phase, or ``rejected``: the new version was worse out
of sample, its interval below zero, so it never takes traffic). A lock on the ledger lets one retraining run at a
time: a request arriving meanwhile (another alert while a rollout runs) is recorded ``skipped`` and starts nothing;
an alert already in the ledger starts nothing either. A retraining that stopped after ``registered`` resumes from
there when started again for the same alert: the version is not trained twice.

Exit codes: 0 promoted, kept_baseline, registered, skipped, or an alert handled already (whatever its result); 1
rolled_back, aborted or rejected; 2 it stopped before its end (an error, or SIGTERM before the rollout began).

With ``--kubernetes`` the documents go to the cluster's API server (``KubernetesStack``) and the rollout moves the
Experiment resource's weights (``seldon_market_ab.rollouts.kubernetes_target``); the outcomes Model, which on a cluster
counts only the arms its Model names, is given the new version as one (``manifests/retraining/``, docs/retraining.md).
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from seldon_market_ab.rollouts.audit import AuditLog
from seldon_market_ab.rollouts.controller import KEPT_BASELINE, PROMOTED
from seldon_market_ab.rollouts.runner import RolloutMetrics, RolloutRunner, Stop, serve_metrics, stop_on_signals
from seldon_market_ab.rollouts.targets import DEFAULT_ADMIN_URL, LocalAdmin, TargetError
from seldon_market_ab.training.variants import VARIANTS

from .registry import versions
from .stack import KubernetesStack, LocalStack
from .templates import DEFAULT_TEMPLATE, candidate_name, render

LEDGER = "retrain.jsonl"
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
OUTCOMES_ARMS = tuple(VARIANTS)  # the outcomes runtime's arms when its Model names none (routers/outcomes.py)


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT before the rollout began: the run stops where it is, to be resumed."""


class RetrainMetrics(RolloutMetrics):
    """The rollout's gauges, and ``market_ab_retrain_runs_total{variant, result}``,
    ``market_ab_retrain_stage_seconds{variant, stage}`` and ``market_ab_retrain_accuracy_difference{variant}``."""

    def __init__(self, registry: CollectorRegistry | None = None):
        super().__init__(registry)
        self.runs = Counter("market_ab_retrain_runs", "Retrainings by result", ["variant", "result"],
                            registry=self.registry)
        self.seconds = Gauge("market_ab_retrain_stage_seconds", "Seconds the last retraining spent in each stage",
                             ["variant", "stage"], registry=self.registry)
        self.difference = Gauge("market_ab_retrain_accuracy_difference", "Out-of-sample accuracy of the last new "
                                "version minus the serving one's, on the same days", ["variant"],
                                registry=self.registry)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _say(text: str) -> None:
    print(f"market-ab retrain: {text}", file=sys.stderr, flush=True)


def handled(ledger: AuditLog, alert: str) -> dict | None:
    """The ledger's last line for ``alert``, None when it never ran (a ``skipped`` line does not count)."""
    lines = [r for r in ledger_records(ledger) if r.get("alert") == alert and r.get("event") != "skipped"]
    return lines[-1] if lines else None


def serving(ledger: AuditLog, variant: str) -> tuple[str, int | None]:
    """The Model that serves ``variant``'s traffic and its version: the last one a retraining's rollout promoted,
    else the variant's own (its top-level, shipped version: None)."""
    promoted = [r for r in ledger_records(ledger) if r.get("event") == "end" and r.get("variant") == variant
                and r.get("result") == PROMOTED and r.get("candidate") and r.get("version")]
    if not promoted:
        return variant, None
    return promoted[-1]["candidate"], int(promoted[-1]["version"])


def ledger_records(ledger: AuditLog) -> list[dict]:
    """Every line of a retraining ledger, a line cut short by a crash left out."""
    if not ledger.path.exists():
        return []
    out = []
    for text in ledger.path.read_text().splitlines():
        try:
            out.append(json.loads(text))
        except ValueError:
            continue  # a line cut short by a crash
    return out


def run_retraining(args, metrics: RetrainMetrics, stop: Stop) -> dict:
    """The stages after the lock is held; the ``end`` line's fields."""
    from .training_run import RetrainPlan, registered_for, retrain  # torch: only when a retraining runs

    ledger = AuditLog(args.state_dir / LEDGER)
    alert = args.alert or f"manual@{_now()}"
    last = handled(ledger, alert)
    if last is not None and last["event"] == "end":
        _say(f"alert {alert} was handled already: {last['result']} ({ledger.path})")
        return {**last, "already": True}
    registered = last if last is not None and last["event"] in ("registered", "applied") else None
    serving_model, serving_version = serving(ledger, args.variant)
    if serving_version is not None and serving_version not in versions(args.models_dir / args.variant):
        _say(f"{serving_model}, promoted earlier, is not in {args.models_dir / args.variant}: comparing with the "
             f"shipped version instead")
        serving_model, serving_version = args.variant, None
    if registered is not None:  # resumed: against what it was compared with, whatever was promoted since
        serving_model = registered.get("serving_model", args.variant)
    plan = RetrainPlan(args.variant, args.as_of, args.holdout_days, serving_version=serving_version)
    if registered is None and last is not None and (found := registered_for(args.models_dir, args.variant, alert)):
        _say(f"version {found['version']} was registered for alert {alert} before a stop: not trained again")
        registered = {"event": "registered", "time": _now(), "alert": alert, "serving_model": serving_model,
                      **found}
        ledger.append(registered)
    if registered is None:
        ledger.append({"event": "start", "time": _now(), "alert": alert, "variant": args.variant,
                       "as_of": args.as_of, "cut": plan.cut(), "holdout_days": args.holdout_days})
        _say(f"alert {alert}: training {args.variant} on data to {plan.cut()} (as of {args.as_of}, the last "
             f"{args.holdout_days} trading days held out), to compare with {serving_model}")
        started = time.perf_counter()
        record = retrain(plan, args.models_dir, trigger={"alert": alert}, progress=args.progress)
        metrics.seconds.labels(args.variant, "train").set(time.perf_counter() - started)
        registered = {"event": "registered", "time": _now(), "alert": alert, "serving_model": serving_model,
                      **record}
        ledger.append(registered)
    if stop.requested:
        raise Interrupted("stopped after training; run it again for the same alert to go on from the registered "
                          "version")
    comparison = registered["comparison"]
    difference = comparison["difference"]
    metrics.difference.labels(args.variant).set(difference["difference"])
    _say(f"version {registered['version']} registered in {registered['folder']}: out of sample "
         f"{comparison['days']['first']}..{comparison['days']['last']} ({difference['n']} predictions) accuracy "
         f"{comparison['new']['accuracy']:.3f} against the serving version's {comparison['serving']['accuracy']:.3f}, "
         f"difference {difference['difference']:+.3f} [{difference['ci'][0]:+.3f}, {difference['ci'][1]:+.3f}]")
    if difference["ci"][1] < 0:
        return _end(ledger, metrics, alert, args.variant, "rejected", [
            "the new version is worse out of sample (the interval of the difference is below zero): no rollout"])
    if args.no_rollout:
        return _end(ledger, metrics, alert, args.variant, "registered", ["--no-rollout: registered only"])
    documents = render(args.template.read_text(), args.variant, registered["version"], args.prometheus,
                       serving_model)
    stack = KubernetesStack(args.namespace, say=_say) if args.kubernetes else LocalStack(args.admin)
    started = time.perf_counter()
    arms = None
    for document in (documents.model, documents.experiment):
        if stop.requested:
            raise Interrupted("stopped before applying; run it again for the same alert to go on")
        outcome = stack.apply(document)
        _say(f"{document['kind']}/{document['metadata']['name']}: {outcome}")
        if document is documents.model and args.kubernetes and args.outcomes_model:
            arms = _count_outcomes(stack, args.outcomes_model, document["metadata"]["name"])
    metrics.seconds.labels(args.variant, "apply").set(time.perf_counter() - started)
    ledger.append({"event": "applied", "time": _now(), "alert": alert, "version": registered["version"],
                   "serving_model": serving_model,
                   "folder": registered["folder"], "comparison": comparison,
                   "model": documents.model["metadata"]["name"], "experiment": documents.rollout.spec.experiment,
                   **({"outcomes_arms": arms} if arms is not None else {})})
    rollout = documents.rollout
    audit = AuditLog(args.state_dir / f"{rollout.name}.audit.jsonl")
    started = time.perf_counter()
    if args.kubernetes:
        from seldon_market_ab.rollouts.kubernetes_target import KubernetesExperiment

        target = KubernetesExperiment(rollout.spec.experiment, stack.namespace, stack.api)
    else:
        target = LocalAdmin(rollout.spec.experiment, args.admin)
    final = RolloutRunner(rollout, target, audit, metrics=metrics, stop=stop).run()
    metrics.seconds.labels(args.variant, "rollout").set(time.perf_counter() - started)
    return _end(ledger, metrics, alert, args.variant, final["phase"], final["reasons"],
                candidate=candidate_name(args.variant, registered["version"]), version=registered["version"],
                audit=str(audit.path))


def _count_outcomes(stack: KubernetesStack, outcomes: str, candidate: str) -> list[str] | None:
    """On a cluster the outcomes model counts only the arms its Model names: the new version becomes one, or the
    rollout would never see its outcomes (they would be answered ``unknown_model``). The arms, None without it."""
    done, arms = stack.add_arm(outcomes, candidate, OUTCOMES_ARMS)
    if done == "absent":
        _say(f"Model/{outcomes}: not in namespace {stack.namespace}; no outcomes model told to count {candidate}")
        return None
    _say(f"Model/{outcomes}: " + (f"{candidate} added to its arms (Seldon loads it again): {','.join(arms)}"
                                  if done == "added" else f"{candidate} is one of its arms already"))
    return arms


def _end(ledger: AuditLog, metrics: RetrainMetrics, alert: str, variant: str, result: str, reasons: list,
         **more) -> dict:
    record = {"event": "end", "time": _now(), "alert": alert, "variant": variant, "result": result,
              "reasons": reasons, **more}
    ledger.append(record)
    metrics.runs.labels(variant, result).inc()
    _say(f"{result}: {reasons[0] if reasons else ''}")
    return record


def cmd_retrain(args) -> int:
    ledger = AuditLog(args.state_dir / LEDGER)
    lock = ledger.lock()
    if lock is None:
        record = {"event": "skipped", "time": _now(), "alert": args.alert, "variant": args.variant,
                  "reason": f"a retraining (pid {ledger.holder()}) runs; this request starts nothing"}
        ledger.append(record)
        _say(record["reason"])
        print(json.dumps(record), flush=True)
        return 0
    stop = stop_on_signals()
    metrics = RetrainMetrics()
    try:
        serve_metrics(args.metrics_port, args.metrics_host, metrics.registry)
        final = run_retraining(args, metrics, stop)
    except Exception as error:  # noqa: BLE001 - said in one line; the ledger says how far it got
        expected = isinstance(error, (TargetError, ValueError, OSError, Interrupted))
        _say(f"{error if expected else repr(error)}; the ledger {ledger.path} says how far it got, and running it "
             "again for the same alert resumes")
        return 2
    finally:
        lock.close()
    print(json.dumps(final), flush=True)
    return 0 if final["result"] in (PROMOTED, KEPT_BASELINE, "registered") or final.get("already") else 1


def add_command(add) -> None:
    """``add``: the CLI's subcommand adder (its parents give ``--models-dir``)."""
    parser = add("retrain",
                 help="train a new version of a model up to a cut, compare it out of sample with the serving one, "
                      "register it beside it and roll it out (once per alert; one at a time)")
    parser.add_argument("variant", help="the model to retrain, e.g. enhanced")
    parser.add_argument("--as-of", default="2018-12-31", help="the last day of data the retraining may know "
                                                              "(default: 2018-12-31, the data's last)")
    parser.add_argument("--holdout-days", type=int, default=126,
                        help="trading days before --as-of held out to compare the versions; the cut is the day before "
                             "them (default: 126, half a year)")
    parser.add_argument("--alert", metavar="KEY", help="the retraining request this run answers (the alert receiver's "
                                                       "key); a key already in the ledger starts nothing")
    parser.add_argument("--state-dir", type=Path, default=Path("market-ab-retrain"),
                        help="the ledger, its lock and the rollout's audit log (default: ./market-ab-retrain)")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE,
                        help="the Model, Experiment and Rollout to apply (default: manifests/retraining/"
                             "templates.yaml)")
    parser.add_argument("--admin", default=DEFAULT_ADMIN_URL,
                        help=f"the admin port of market-ab serve (default: {DEFAULT_ADMIN_URL})")
    parser.add_argument("--kubernetes", action="store_true",
                        help="apply the Model and Experiment through the Kubernetes API, wait for the Model to be "
                             "Ready, and roll out against the Experiment resource, with in-cluster credentials or "
                             "the kubeconfig (pip install 'seldon-market-ab[kubernetes]'); instead of --admin")
    parser.add_argument("--namespace", help="with --kubernetes: the namespace (default: the pod's, else the "
                                            "kubeconfig's)")
    parser.add_argument("--outcomes-model", default="outcomes", metavar="NAME",
                        help="with --kubernetes: the outcomes Model whose `arms` parameter the new version joins, when "
                             "it exists; empty to skip (default: outcomes)")
    parser.add_argument("--prometheus", default=DEFAULT_PROMETHEUS,
                        help=f"the Prometheus the rollout reads (default: {DEFAULT_PROMETHEUS})")
    parser.add_argument("--no-rollout", action="store_true", help="train, compare and register only")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve the market_ab_retrain_* and market_ab_rollout_* metrics on PORT/metrics")
    parser.add_argument("--metrics-host", default="127.0.0.1", help="the metrics' address (default: 127.0.0.1)")
    parser.set_defaults(func=cmd_retrain)
