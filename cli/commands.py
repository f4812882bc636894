"""``market-ab``: train the LSTMs, build the drift reference, print the evaluation, check and serve the Seldon
manifests on this machine, send requests through them, roll out, retrain, receive alerts, run the demo, and render
the generated sections of the README and docs."""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from pathlib import Path

from seldon_market_ab.training.variants import VARIANTS

MODELS_DIR = Path("models")


def _missing(models_dir: Path, names) -> list[str]:
    return [n for n in names if not all((models_dir / n / f).exists() for f in ("model.pt", "metadata.json"))]


def cmd_train(args) -> int:
    from seldon_market_ab.training.report import text_table
    from seldon_market_ab.training.train import train_models

    names = args.models or list(VARIANTS)
    if args.if_missing:
        names = _missing(args.models_dir, names)
        if not names:
            print(f"all models present in {args.models_dir}; nothing to train")
            return 0
    metadata = train_models(names, args.models_dir, progress=not args.quiet)
    print(text_table(metadata, "test"))
    return 0


def cmd_reference(args) -> int:
    from seldon_market_ab.detectors.reference import InvalidReference, Reference
    from seldon_market_ab.training.drift_reference import FOLDER, build_reference

    folder = args.models_dir / FOLDER
    if args.if_missing:
        try:
            Reference.load(folder)
            print(f"drift reference present in {folder}; nothing to build")
            return 0
        except InvalidReference as error:  # missing, or of an older format
            print(error)
    print(f"building the drift reference in {folder} (simulating the online thresholds takes a few seconds)")
    reference = build_reference(args.models_dir)
    source = reference.metadata["source"]
    print(f"{len(reference.rows)} reference rows and {len(reference.heldout)} held-out rows from "
          f"{source['first_date']} to {source['last_date']} ({', '.join(source['instruments'])}); online "
          f"thresholds for an expected run time of {reference.online['ert']} rows in "
          f"{reference.online['seconds']} s")
    return 0


def cmd_evaluate(args) -> int:
    from seldon_market_ab.training.report import load_metadata, markdown_table, plot_evaluation, text_table

    metadata = load_metadata(args.models_dir)
    if not metadata:
        print(f"no trained models in {args.models_dir}; run `market-ab train`", file=sys.stderr)
        return 1
    print((markdown_table if args.markdown else text_table)(metadata, args.split))
    if args.plot:
        print(f"plot written to {plot_evaluation(metadata, args.plot, args.split)}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.models_dir, scenarios=args.scenarios, workers=args.workers, manifests=args.manifests,
                    reports_dir=args.reports_dir, seed=args.seed, run=args.run_name, keep_logs=not args.no_logs)


def cmd_readme(args) -> int:
    from .readme import documents, placement_problems, render, sections, stale_sections

    texts = {path: path.read_text() for path in documents(args.readme, args.docs_dir)}
    problems = placement_problems(texts, sections(args.models_dir, args.docs_dir))
    for problem in problems:
        print(f"market-ab readme: {problem}", file=sys.stderr)
    if args.check:
        stale = [(path, name) for path, text in texts.items()
                 for name in stale_sections(text, args.models_dir, args.docs_dir)]
        for path, name in stale:
            print(f"{path}: section '{name}' differs from its rendering; run `market-ab readme`", file=sys.stderr)
        return 1 if stale or problems else 0
    for path, text in texts.items():
        rendered = render(text, args.models_dir, args.docs_dir)
        if rendered != text:
            path.write_text(rendered)
            print(f"{path}: rewrote its generated sections")
    if problems:
        return 1
    print(f"{args.readme} and {args.docs_dir}/*.md: generated sections up to date")
    return 0


def cmd_manifests_check(args) -> int:
    from seldon_market_ab.local_seldon.manifests import check, find_crds, load_crds, load_documents

    try:
        crds = load_crds(args.crds or find_crds())
        documents = load_documents(args.paths)
    except (ValueError, OSError) as error:
        print(f"market-ab manifests check: {error}", file=sys.stderr)
        return 2
    problems = check(documents, crds)
    for problem in problems:
        print(problem)
    seldon = sum(1 for _, doc in documents if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(
        "mlops.seldon.io/"))
    print(f"{len(documents)} objects ({seldon} Seldon) in {len(args.paths)} path(s): "
          f"{len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
    return 1 if problems else 0


def cmd_alerts_receive(args) -> int:
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from seldon_market_ab.local_seldon.alert_receiver import AlertReceiver

    trigger, triggered = None, ""
    if args.retrain_job:
        import yaml

        from seldon_market_ab.retraining.job_trigger import JobTrigger
        from seldon_market_ab.rollouts.targets import TargetError

        try:
            trigger = JobTrigger(yaml.safe_load(args.retrain_job.read_text()), args.namespace)
        except (OSError, ValueError, yaml.YAMLError, TargetError) as error:
            print(f"market-ab alerts: --retrain-job {args.retrain_job}: {error}", file=sys.stderr)
            return 2
        triggered = f"; each new one creates a Job from {args.retrain_job} in namespace {trigger.namespace}"
    receiver = AlertReceiver(args.alerts_dir, trigger)
    app = receiver.app()

    async def metrics(_request):
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    ready = (f"market-ab alerts: receiving on http://{args.host}:{args.port}/alerts/notify and /alerts/retrain; "
             f"notification log {receiver.notifications_path}, retraining requests {receiver.requests_path}"
             f"{triggered}")
    # run_app prints once the port is bound: then the line is true
    web.run_app(app, host=args.host, port=args.port, print=lambda _: print(ready, flush=True), access_log=None)
    return 0


def cmd_serve(args) -> int:
    from seldon_market_ab.local_seldon.serve import ServeOptions, serve

    options = ServeOptions(args.models_dir, args.manifests or [Path("manifests/overlays/dev")], args.http_port,
                           args.grpc_port, args.host, args.seed, args.state_dir,
                           None if args.no_prometheus else args.prometheus_port, args.prometheus_dir,
                           args.scrape_interval, args.alert_for, None if args.no_admin else args.admin_port,
                           None if args.no_alertmanager else args.alertmanager_port, args.alerts_dir,
                           shlex.split(args.on_retrain) if args.on_retrain else None)
    try:
        return serve(options)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"market-ab serve: {error}", file=sys.stderr)
        return 2


def cmd_infer(args) -> int:
    import json
    import uuid

    import grpc
    import numpy as np

    from seldon_market_ab.client import InferenceClient, RestError
    from seldon_market_ab.runtimes.artifact import LSTMArtifact
    from seldon_market_ab.training.dataset import heldout_days

    root = args.ca_cert.read_bytes() if args.ca_cert else None
    client = InferenceClient(None if args.rest else args.grpc, args.rest, tls=args.tls, root_certificates=root,
                             retries=args.retries)
    protocol = "rest" if args.rest else "grpc"
    if args.outcome:
        return _send_outcomes(client, args, protocol)
    if args.feedback:
        pairs = [item.rsplit("=", 1) for item in args.feedback]
        requests = [("feedback", {"decision_id": np.array([p[0] for p in pairs], dtype=object),
                                  "reward": np.array([float(p[1]) for p in pairs])})]
    else:
        rows = LSTMArtifact.load(args.models_dir / "baseline").min_window
        requests = [(day.date, {"ohlcv": day.ohlcv[None]}) for day in heldout_days((args.instrument,), args.windows,
                                                                                    rows)]
    route = args.route
    for label, inputs in requests:
        request_id = args.request_id if args.request_id and len(requests) == 1 else uuid.uuid4().hex
        try:
            answer = client.infer(args.target, inputs, protocol, request_id, route, args.timeout)
        except (grpc.RpcError, RestError) as error:
            return _call_failed(args.target, error)
        if args.sticky and answer.route:
            route = answer.route
        outputs = {name: value.tolist() if hasattr(value, "tolist") else value for name, value in
                   answer.outputs.items()}
        if args.json:
            print(json.dumps({"input": label, "request_id": answer.request_id, "route": answer.route,
                              "attempts": answer.attempts, "outputs": outputs}))
        else:
            shown = "  ".join(f"{name}={_short(value)}" for name, value in outputs.items())
            print(f"{label}  id={answer.request_id}  route={answer.route or '-'}  {shown}")
    client.close()
    return 0


def _call_failed(target: str, error) -> int:
    """The status and message of a failed call (gRPC or REST), on stderr; the exit code."""
    from seldon_market_ab.client import RestError

    shown = f"HTTP {error.status}: {error.message}" if isinstance(error, RestError) else \
        f"{error.code().name}: {error.details()}"
    print(f"market-ab infer: {target}: {shown}", file=sys.stderr)
    return 1


def _send_outcomes(client, args, protocol: str) -> int:
    import grpc

    from seldon_market_ab.client import RestError

    ids, models, correct, returns = zip(*args.outcome, strict=True)
    given = [r for r in returns if r is not None]
    if given and len(given) != len(returns):
        print("market-ab infer: give a RETURN with every --outcome or with none", file=sys.stderr)
        return 2
    try:
        statuses = client.send_outcomes(list(ids), list(models), list(correct), list(returns) if given else None,
                                        protocol, args.target, args.timeout)
    except (grpc.RpcError, RestError) as error:
        return _call_failed(args.target, error)
    for request_id, model, status in zip(ids, models, statuses, strict=True):
        print(f"{request_id}  model={model}  status={status}")
    client.close()
    return 0


def _duration(text: str) -> str:
    from seldon_market_ab.local_seldon.prometheus import duration_seconds

    try:
        duration_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def outcome_argument(text: str) -> tuple[str, str, int, float | None]:
    """``ID=MODEL:CORRECT[:RETURN]`` -> (request id, model, 0 or 1, return or None)."""
    request_id, _, rest = text.partition("=")
    parts = rest.split(":")
    try:
        if not request_id or len(parts) not in (2, 3) or not parts[0] or parts[1] not in ("0", "1"):
            raise ValueError
        return request_id, parts[0], int(parts[1]), float(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ID=MODEL:CORRECT[:RETURN] (CORRECT 1 if the predicted "
                                         "direction was right, else 0; e.g. 3f2a=baseline:1:0.004)") from None


def _short(value) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _models_dir_option(default) -> argparse.ArgumentParser:
    """The one definition of ``--models-dir``, shared as a parent parser by the top level and every subcommand, so
    that it is accepted where users type it: ``market-ab serve --models-dir DIR`` as well as ``market-ab --models-dir
    DIR serve``. The subcommands' copy defaults to ``argparse.SUPPRESS``: a subcommand that was not given the option
    leaves the namespace alone instead of overwriting a value given before it with the default."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--models-dir", type=Path, default=default, metavar="DIR",
                        help=f"model repository (default: {MODELS_DIR}); before or after the subcommand, the one "
                             "after wins")
    return shared


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, without running anything (tests parse with it)."""
    parser = argparse.ArgumentParser(prog="market-ab", description=__doc__, parents=[_models_dir_option(MODELS_DIR)])
    shared = [_models_dir_option(argparse.SUPPRESS)]
    commands = parser.add_subparsers(dest="command", required=True)
    add_command = functools.partial(commands.add_parser, parents=shared)

    train = add_command("train", help="train, export and evaluate LSTM variants")
    train.add_argument("models", nargs="*", choices=[[], *VARIANTS], metavar="MODEL",
                       help=f"variants to train (default: all of {', '.join(VARIANTS)})")
    train.add_argument("--if-missing", action="store_true", help="only train variants without artifacts")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    reference = add_command("reference", help="build the drift detector's reference from the training period")
    reference.add_argument("--if-missing", action="store_true", help="only if there is none")
    reference.set_defaults(func=cmd_reference)

    evaluate = add_command("evaluate", help="print the stored evaluation table")
    evaluate.add_argument("--split", choices=("test", "validation"), default="test")
    evaluate.add_argument("--markdown", action="store_true")
    evaluate.add_argument("--plot", type=Path, metavar="PNG", help="also draw accuracy and AUC with intervals")
    evaluate.set_defaults(func=cmd_evaluate)

    demo = add_command("demo", help="run market-ab serve, drive an A/A, the A/B experiment, both router "
                                     "pipelines and a faulty candidate with Locust, and write reports/<run>/")
    demo.add_argument("--scenarios", type=int, default=250,
                      help="held-out market days per instrument sent through each experiment, once each (default 250)")
    demo.add_argument("--workers", type=int, default=4, help="concurrent Locust users, REST and gRPC (default 4)")
    demo.add_argument("--reports-dir", type=Path, default=Path("reports"), help="where reports/<run>/ goes")
    demo.add_argument("--seed", type=int, default=0, help="seed of the split and of the injected fault")
    demo.add_argument("--run-name", help="the report folder's name (default: the date and time)")
    demo.add_argument("--no-logs", action="store_true", help="leave the raw request logs out of the report folder")
    demo.add_argument("--manifests", type=Path, action="append", metavar="PATH",
                      help="manifests to serve; repeatable (default: manifests/overlays/dev)")
    demo.set_defaults(func=cmd_demo)

    readme = add_command("readme", help="render the generated sections (tables, evidence) of the README and docs/*.md")
    readme.add_argument("--readme", type=Path, default=Path("README.md"))
    readme.add_argument("--docs-dir", type=Path, default=Path("docs"),
                        help="where the evidence JSON and the docs pages live")
    readme.add_argument("--check", action="store_true", help="only report stale sections (exit 1 if any)")
    readme.set_defaults(func=cmd_readme)

    manifests = add_command("manifests", help="Seldon manifests")
    manifest_commands = manifests.add_subparsers(dest="manifests_command", required=True)
    manifests_check = manifest_commands.add_parser(
        "check", parents=shared, help="check Seldon manifests (files or Kustomize folders) against Seldon's CRDs and "
                                      "its pipeline rules; exit 1 with one line per problem")
    manifests_check.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    manifests_check.add_argument("--crds", type=Path, help="folder of Seldon's CRD YAML files (default: "
                                                           "$SELDON_CRDS, or ../shared/reference/seldon-crds)")
    manifests_check.set_defaults(func=cmd_manifests_check)

    from seldon_market_ab.rollouts.commands import add_commands as add_rollout_commands

    add_rollout_commands(add_command, shared)
    from seldon_market_ab.retraining.commands import add_command as add_retrain_command

    add_retrain_command(add_command)

    alerts = add_command("alerts", help="Alertmanager's notifications: the notification log and the retraining "
                                        "trigger")
    alert_commands = alerts.add_subparsers(dest="alerts_command", required=True)
    receive = alert_commands.add_parser(
        "receive", parents=shared, help="receive Alertmanager's webhooks on a cluster (market-ab serve receives them "
                                        "on its admin port): POST /alerts/notify and /alerts/retrain, GET "
                                        "/alerts/retrain, /metrics")
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    receive.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    receive.add_argument("--dir", type=Path, default=Path("market-ab-alerts"), dest="alerts_dir",
                         help="where the notification log and the retraining requests are kept (default: "
                              "./market-ab-alerts)")
    receive.add_argument("--retrain-job", type=Path, metavar="FILE",
                         help="create a Job from this template for each new retraining request, named by it, with "
                              "--alert KEY appended to its args; one at a time (manifests/retraining/job.yaml; "
                              "default: requests are recorded only)")
    receive.add_argument("--namespace", help="with --retrain-job: the Jobs' namespace (default: the pod's, else the "
                                             "kubeconfig's)")
    receive.set_defaults(func=cmd_alerts_receive)

    serve = add_command(
        "serve", help="serve the model repository with MLServer behind a gateway that runs the Seldon Pipelines and "
                      "Experiments of the manifests (REST and gRPC, routed by the seldon-model header)")
    serve.add_argument("--manifests", type=Path, action="append", metavar="PATH",
                       help="manifest file or Kustomize folder; repeatable (default: manifests/overlays/dev)")
    serve.add_argument("--http-port", type=int, default=9000, help="REST port (default: 9000)")
    serve.add_argument("--grpc-port", type=int, default=9001, help="gRPC port (default: 9001)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--seed", type=int, help="seed of the experiments' random split (default: unseeded)")
    serve.add_argument("--state-dir", type=Path, help="where the routers keep their state between runs "
                                                      "(default: a new temporary folder, so routers start fresh)")
    serve.add_argument("--prometheus-port", type=int, default=9090,
                       help="port of the stack's Prometheus, which scrapes the gateway and MLServer with the "
                            "manifests' alert rules (default: 9090)")
    serve.add_argument("--no-prometheus", action="store_true", help="run without Prometheus")
    serve.add_argument("--prometheus-dir", type=Path, help="Prometheus's configuration and data (default: in the "
                                                           "run's temporary folder, removed when it stops)")
    serve.add_argument("--scrape-interval", default="2s", type=_duration,
                       help="how often Prometheus scrapes and evaluates the rules (default: 2s)")
    serve.add_argument("--alert-for", type=_duration, metavar="DURATION",
                       help="cap every alert rule's `for:` at DURATION, e.g. 10s, so that alerts fire within a short "
                            "demo or test; the expressions are unchanged (default: the manifests' durations)")
    serve.add_argument("--admin-port", type=int, default=9002,
                       help="loopback-only port where GET/PUT /admin/experiments/NAME read and change an experiment's "
                            "candidates and weights while serving (default: 9002)")
    serve.add_argument("--no-admin", action="store_true", help="run without the admin port")
    serve.add_argument("--alertmanager-port", type=int, default=9093,
                       help="port of the stack's Alertmanager, beside its Prometheus: the input-drift alert (and any "
                            "labelled retrain=\"true\") goes to the retraining trigger, every alert to a notification "
                            "log, both received on the admin port (default: 9093)")
    serve.add_argument("--no-alertmanager", action="store_true", help="run without Alertmanager")
    serve.add_argument("--alerts-dir", type=Path, help="the notification log and the retraining requests (default: "
                                                       "STATE_DIR/alerts, else the run's temporary folder)")
    serve.add_argument("--on-retrain", metavar="COMMAND",
                       help="run COMMAND --alert KEY for each retraining request Alertmanager routes (one per firing "
                            "alert), e.g. \"market-ab retrain enhanced\"; its output in the alerts folder (default: "
                            "requests are recorded only)")
    serve.set_defaults(func=cmd_serve)

    infer = add_command(
        "infer", help="send held-out market windows (or router feedback, or outcomes) to a model, pipeline or "
                      "experiment through market-ab serve or Seldon, over gRPC or REST")
    infer.add_argument("target", help="the seldon-model header: <model>, <name>.pipeline or <name>.experiment")
    infer.add_argument("--grpc", default="127.0.0.1:9001", metavar="HOST:PORT",
                       help="gRPC address (default: 127.0.0.1:9001, market-ab serve's)")
    infer.add_argument("--rest", metavar="URL", help="use REST at this address instead, e.g. http://127.0.0.1:9000")
    infer.add_argument("--instrument", default="sp500", choices=("sp500", "nasdaq"))
    infer.add_argument("--windows", type=int, default=1, help="the last N held-out windows, one request each")
    infer.add_argument("--feedback", nargs="+", metavar="ID=REWARD",
                       help="send router feedback instead: decision (request) ids and their rewards")
    infer.add_argument("--outcome", nargs="+", metavar="ID=MODEL:CORRECT[:RETURN]", type=outcome_argument,
                       help="send outcomes to the outcomes model (the target) instead: the request id, the name of the "
                            "model that answered it (without :version), 1 if its direction was right else 0, and the "
                            "strategy's return")
    infer.add_argument("--request-id", help="the request id (one request only; default: a new one per request)")
    infer.add_argument("--route", help="x-seldon-route to send (stick to an experiment candidate)")
    infer.add_argument("--sticky", action="store_true", help="send each answer's x-seldon-route with the next request")
    infer.add_argument("--timeout", type=float, default=30.0, help="deadline per attempt, seconds (default 30)")
    infer.add_argument("--retries", type=int, default=2, help="retries after UNAVAILABLE / 503 only (default 2)")
    infer.add_argument("--tls", action="store_true", help="TLS (gRPC) / https (REST)")
    infer.add_argument("--ca-cert", type=Path, metavar="PEM", help="trust this CA (default: the system's)")
    infer.add_argument("--json", action="store_true", help="one JSON object per answer")
    infer.set_defaults(func=cmd_infer)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
