"""``market-ab rollout run|status|abort FILE``: the command line of the rollout loop.

``run`` prints one JSON line when the rollout ends (``{"rollout", "phase", "reasons", "candidate_requests"}``) and
exits 0 when promoted or kept_baseline, 1 when rolled_back or aborted, 2 on a bad document or an unreachable target.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
from pathlib import Path

from .audit import AuditLog
from .controller import ABORTED, KEPT_BASELINE, PROMOTED
from .document import Rollout, RolloutError
from .figures import FiguresError, PrometheusFigures
from .runner import RolloutMetrics, RolloutRunner, describe, live_loop
from .targets import DEFAULT_ADMIN_URL, LocalAdmin, TargetError


def _load(args) -> tuple[Rollout, AuditLog]:
    rollout = Rollout.from_yaml(Path(args.file).read_text(), str(args.file))
    if getattr(args, "prometheus", None):
        rollout = rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"prometheus": args.prometheus})})
    audit = AuditLog(args.audit or Path(args.file).with_suffix(".audit.jsonl"))
    return rollout, audit


def cmd_run(args) -> int:
    try:
        rollout, audit = _load(args)
    except (OSError, RolloutError) as error:
        print(f"market-ab rollout: {error}", file=sys.stderr)
        return 2
    owner = live_loop(audit.unfinished_run())
    if owner:
        print(f"market-ab rollout: a loop (pid {owner}) already runs {rollout.name}; `market-ab rollout abort "
              f"{args.file}` stops it", file=sys.stderr)
        return 2
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    metrics = RolloutMetrics()
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, "127.0.0.1", registry=metrics.registry)
    runner = RolloutRunner(rollout, LocalAdmin(rollout.spec.experiment, args.admin), audit,
                           PrometheusFigures(rollout.spec), metrics=metrics, stop=stop)
    try:
        final = runner.run()
    except (TargetError, FiguresError) as error:
        print(f"market-ab rollout: {error}", file=sys.stderr)
        return 2
    print(json.dumps(final), flush=True)
    return 0 if final["phase"] in (PROMOTED, KEPT_BASELINE) else 1


def cmd_status(args) -> int:
    try:
        _, audit = _load(args)
    except (OSError, RolloutError) as error:
        print(f"market-ab rollout: {error}", file=sys.stderr)
        return 2
    print(json.dumps(describe(audit.current_run()), indent=None if args.json else 2))
    return 0


def cmd_abort(args) -> int:
    """Stop the loop that runs FILE (it sets the baseline to 100 and ends the run aborted); with no loop running,
    do that here."""
    try:
        rollout, audit = _load(args)
    except (OSError, RolloutError) as error:
        print(f"market-ab rollout: {error}", file=sys.stderr)
        return 2
    run = audit.unfinished_run()
    if not run:
        print(f"market-ab rollout: {rollout.name} is not running ({describe(audit.current_run())['phase']})",
              file=sys.stderr)
        return 1
    owner = live_loop(run)
    if owner:
        pidfd = os.pidfd_open(owner)
        os.kill(owner, signal.SIGTERM)
        select.select([pidfd], [], [], 120)  # readable once the loop has ended the run and exited
        os.close(pidfd)
    else:  # killed earlier: end the run here
        try:
            spec = rollout.spec
            LocalAdmin(spec.experiment, args.admin).set_weights({spec.baseline: 100, spec.candidate: 0})
        except TargetError as error:
            print(f"market-ab rollout: {error}", file=sys.stderr)
            return 2
        audit.append({"event": "end", "rollout": rollout.name, "phase": ABORTED,
                      "reasons": ["aborted by `market-ab rollout abort` (no loop was running)"],
                      "weights": {rollout.spec.baseline: 100, rollout.spec.candidate: 0}})
    print(json.dumps(describe(audit.current_run())))
    return 0


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
        parser.set_defaults(func=func)
        return parser

    run = command("run", "run (or resume) the rollout; one JSON line at its end", cmd_run)
    run.add_argument("--prometheus", help="Prometheus URL (default: the document's spec.prometheus)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve market_ab_rollout_* metrics on 127.0.0.1:PORT/metrics")
    status = command("status", "where the last run stands, from the audit log", cmd_status)
    status.add_argument("--json", action="store_true", help="one line")
    command("abort", "end the running rollout aborted (baseline 100)", cmd_abort)
