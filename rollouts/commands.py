"""``market-ab rollout run|status|abort FILE``: the command line of the rollout loop.

``run`` prints one JSON line when the rollout ends (``{"rollout", "phase", "reasons", "candidate_requests"}``) and
exits 0 when promoted or kept_baseline, 1 when rolled_back or aborted, 2 when it could not begin (a bad document, an
unreachable target or Prometheus, a run it must not resume), and 3 when it stopped with its run unfinished (the
weights could not be set after retries, or anything unforeseen): running it again resumes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import signal
import sys
from pathlib import Path

from .audit import AuditLog
from .controller import ABORTED, KEPT_BASELINE, PROMOTED
from .document import Rollout
from .figures import FiguresError, PrometheusFigures
from .runner import ResumeError, RolloutMetrics, RolloutRunner, describe, serve_metrics, stop_on_signals
from .targets import DEFAULT_ADMIN_URL, LocalAdmin, TargetError

ABORT_WAIT_SECONDS = 120  # a loop ends within its final weight change and two scrapes


def _load(args) -> tuple[Rollout, AuditLog]:
    rollout = Rollout.from_yaml(Path(args.file).read_text(), str(args.file))
    if getattr(args, "prometheus", None):
        rollout = rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"prometheus": args.prometheus})})
    audit = AuditLog(args.audit or Path(args.file).with_suffix(".audit.jsonl"))
    return rollout, audit


def _loaded(args) -> tuple[Rollout, AuditLog] | None:
    try:
        return _load(args)
    except (OSError, ValueError) as error:  # RolloutError, a file that is not UTF-8
        print(f"market-ab rollout: {error}", file=sys.stderr)
        return None


def _target(args, rollout: Rollout):
    """The admin port of the local stack, or with ``--kubernetes`` the Experiment resource."""
    if args.kubernetes:
        from .kubernetes_target import KubernetesExperiment

        return KubernetesExperiment(rollout.spec.experiment, args.namespace)
    return LocalAdmin(rollout.spec.experiment, args.admin)


def cmd_run(args) -> int:
    loaded = _loaded(args)
    if loaded is None:
        return 2
    rollout, audit = loaded
    lock = audit.lock()
    if lock is None:
        print(f"market-ab rollout: a loop (pid {audit.holder()}) already runs {rollout.name}; "
              f"`market-ab rollout abort {args.file}` stops it", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    metrics = RolloutMetrics()
    try:
        serve_metrics(args.metrics_port, args.metrics_host, metrics.registry)
        runner = RolloutRunner(rollout, _target(args, rollout), audit, PrometheusFigures(rollout.spec),
                               metrics=metrics, stop=stop)
        final = runner.run(restart=args.restart)
    except Exception as error:  # noqa: BLE001 - said in one line; the exit code says whether to run it again
        started = "runner" in locals() and runner.started
        expected = isinstance(error, (TargetError, FiguresError, ResumeError, OSError))
        print(f"market-ab rollout: {error if expected else repr(error)}"
              + (f"; the run is unfinished: run it again to resume (audit {audit.path})" if started else ""),
              file=sys.stderr)
        return 3 if started else 2
    finally:
        lock.close()
    print(json.dumps(final), flush=True)
    return 0 if final["phase"] in (PROMOTED, KEPT_BASELINE) else 1


def cmd_status(args) -> int:
    loaded = _loaded(args)
    if loaded is None:
        return 2
    print(json.dumps(describe(loaded[1].current_run()), indent=None if args.json else 2))
    return 0


def cmd_abort(args) -> int:
    """Stop the loop that runs FILE (it sets the baseline to 100 and ends the run aborted); with no loop running,
    do that here. Exit 0 once the run has ended aborted, 1 if it was not running or did not end."""
    loaded = _loaded(args)
    if loaded is None:
        return 2
    rollout, audit = loaded
    run = audit.unfinished_run()
    if not run:
        print(f"market-ab rollout: {rollout.name} is not running ({describe(audit.current_run())['phase']})",
              file=sys.stderr)
        return 1
    lock = audit.lock()
    if lock is None:  # a loop holds it: ask it to stop, and wait until it has
        owner = audit.holder()
        try:
            pidfd = os.pidfd_open(owner)
            os.kill(owner, signal.SIGTERM)
            select.select([pidfd], [], [], ABORT_WAIT_SECONDS)  # readable once the loop has exited
            os.close(pidfd)
        except (ProcessLookupError, PermissionError, TypeError):  # it ended meanwhile
            pass
    else:  # killed earlier: end the run here
        run = audit.unfinished_run()  # again, now that nobody else can write it
        if not run:
            lock.close()
            status = describe(audit.current_run())
            print(json.dumps(status))
            return 0 if status["phase"] == ABORTED else 1
        with lock:
            spec = rollout.spec
            try:
                _target(args, rollout).set_weights({spec.baseline: 100, spec.candidate: 0})
            except TargetError as error:
                print(f"market-ab rollout: {error}", file=sys.stderr)
                return 2
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
            last = next(r for r in reversed(run) if "progress" in r)
            audit.append({"event": "end", "time": now, "rollout": rollout.name, "phase": ABORTED,
                          "reasons": ["aborted by `market-ab rollout abort` (no loop was running)"],
                          "step": last.get("step"), "weights": {spec.baseline: 100, spec.candidate: 0}})
    status = describe(audit.current_run())
    print(json.dumps(status))
    return 0 if status["phase"] == ABORTED else 1


def add_commands(add_command, shared) -> None:
    rollout = add_command("rollout", help="progressive delivery of a candidate through an Experiment: steps of weight, "
                                          "gates from Prometheus, rollback at once, promotion at the end")
    commands = rollout.add_subparsers(dest="rollout_command", required=True)

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=shared, help=help)
        parser.add_argument("file", type=Path, metavar="FILE", help="the Rollout document (YAML)")
        parser.add_argument("--audit", type=Path, metavar="PATH",
                            help="the audit log (default: FILE with the suffix .audit.jsonl)")
        parser.add_argument("--admin", default=DEFAULT_ADMIN_URL,
                            help=f"the admin port of market-ab serve (default: {DEFAULT_ADMIN_URL})")
        parser.add_argument("--kubernetes", action="store_true",
                            help="patch the Experiment resource on a cluster instead (in-cluster credentials, else the "
                                 "kubeconfig; pip install 'seldon-market-ab[kubernetes]')")
        parser.add_argument("--namespace", help="the Experiment's namespace with --kubernetes (default: the pod's, "
                                                "else the kubeconfig context's)")
        parser.set_defaults(func=func)
        return parser

    run = command("run", "run (or resume) the rollout; one JSON line at its end", cmd_run)
    run.add_argument("--prometheus", help="Prometheus URL (default: the document's spec.prometheus)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve the market_ab_rollout_* metrics on PORT/metrics")
    run.add_argument("--restart", action="store_true",
                     help="run the rollout again although its last run ended (by default its end is printed)")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="the address the metrics listen on (default: 127.0.0.1; 0.0.0.0 in a pod)")
    status = command("status", "where the last run stands, from the audit log", cmd_status)
    status.add_argument("--json", action="store_true", help="one line")
    command("abort", "end the running rollout aborted (baseline 100)", cmd_abort)
