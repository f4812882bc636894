"""``market-ab serve``: one MLServer holding the model repository, the gateway in front of it executing the
Pipeline and Experiment manifests, REST and gRPC, and a Prometheus scraping both with the manifests' alert rules,
until SIGTERM or SIGINT.

Start-up refuses what would behave differently on a cluster: a manifest field the gateway does not implement, a
model the manifests name that the repository lacks, graph mistakes ``market-ab manifests check`` reports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from mlserver.grpc import dataplane_pb2_grpc

from .admin import ADMIN_HOST, DEFAULT_ADMIN_PORT, AdminDoor
from .alert_receiver import AlertReceiver, CommandTrigger
from .alertmanager import DEFAULT_PORT as DEFAULT_ALERTMANAGER_PORT
from .alertmanager import INSTALL_HINT as ALERTMANAGER_HINT
from .alertmanager import RETRAIN_ALERTS, AlertmanagerProcess, alertmanager_config
from .deployment import Deployment
from .gateway import Gateway
from .grpc_server import GrpcDoor
from .manifests import load_documents
from .mlserver_process import MLServerProcess, StartInterrupted
from .prometheus import DEFAULT_PORT as DEFAULT_PROMETHEUS_PORT
from .prometheus import DEFAULT_SCRAPE_INTERVAL, INSTALL_HINT, PrometheusProcess, rule_groups
from .registration import ModelRegistrar
from .repository import model_folders, prepare_repository, versioned_folders
from .rest import RestDoor

READY_LINE = "market-ab serve: ready"  # what a supervising process waits for on stdout
LAUNCHED_LINE = "market-ab serve: MLServer launched"  # its models are loading
MLSERVER_LINE = "market-ab serve: MLServer ready"  # MLServer's own addresses, to call a model directly
PROMETHEUS_LINE = "prometheus:"  # its address, once it is ready
ADMIN_LINE = "admin:"  # the admin port's address
ALERTMANAGER_LINE = "alertmanager:"  # its address, once it is ready
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT = 9000, 9001


@dataclass
class ServeOptions:
    models_dir: Path
    manifests: list[Path]
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    host: str = "127.0.0.1"
    seed: int | None = None
    state_dir: Path | None = None
    prometheus_port: int | None = DEFAULT_PROMETHEUS_PORT  # None: no Prometheus
    prometheus_dir: Path | None = None  # its configuration and data; default: in the run's temporary folder
    scrape_interval: str = DEFAULT_SCRAPE_INTERVAL
    alert_for: str | None = None  # caps every alert's `for:` (demos, tests)
    admin_port: int | None = DEFAULT_ADMIN_PORT  # None: no admin port
    alertmanager_port: int | None = DEFAULT_ALERTMANAGER_PORT  # None: no Alertmanager (nor without Prometheus)
    alerts_dir: Path | None = None  # the notification log and retraining requests; default: state_dir/alerts
    on_retrain: list[str] | None = None  # the command a retraining request runs, with --alert KEY appended


def plan_deployment(options: ServeOptions, documents: list | None = None) -> Deployment:
    """The deployment the manifests describe, checked against the model repository. Raises ValueError."""
    deployment = Deployment.from_documents(documents if documents is not None else load_documents(options.manifests))
    served = set(model_folders(options.models_dir)) | set(versioned_folders(options.models_dir,
                                                                              deployment.model_versions))
    missing = sorted(deployment.models - served)
    if missing:
        raise ValueError(f"the manifests name models that {options.models_dir} does not hold: {', '.join(missing)}; "
                         f"it holds {', '.join(sorted(served)) or 'none'}")
    return deployment


def serve(options: ServeOptions, retrain_trigger=None) -> int:
    """``retrain_trigger(request)``: what a retraining request routed by Alertmanager starts (none: recorded only)."""
    if options.prometheus_port is not None and shutil.which("prometheus") is None:
        raise ValueError(f"prometheus is not installed: {INSTALL_HINT}")
    alerting = options.prometheus_port is not None and options.alertmanager_port is not None
    if alerting and options.admin_port is None:
        alerting = False
        print("market-ab serve: no Alertmanager: its receivers live on the admin port, which --no-admin turns off",
              flush=True)
    if alerting and not AlertmanagerProcess.installed():
        raise ValueError(f"prometheus-alertmanager is not installed: {ALERTMANAGER_HINT}")
    # taken ports are named now, not after MLServer has loaded every model
    if options.prometheus_port is not None:
        PrometheusProcess.check_port(options.host, options.prometheus_port)
    if alerting:
        AlertmanagerProcess.check_port(ADMIN_HOST, options.alertmanager_port)
    documents = load_documents(options.manifests)
    deployment = plan_deployment(options, documents)
    rules = rule_groups(documents, options.alert_for)
    workdir = Path(tempfile.mkdtemp(prefix="market-ab-serve-"))
    repository = prepare_repository(options.models_dir, deployment.model_parameters, workdir / "models",
                                    deployment.model_versions)
    mlserver = MLServerProcess(repository, parallel_workers=None, state_dir=options.state_dir,
                               interrupted=_STOP_REQUESTED.is_set)
    # until the gateway's loop takes them over, SIGTERM and SIGINT are remembered, and the wait for MLServer's
    # models checks for them (raising from the handler could leave MLServer started but not yet known)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _remember_signal)
    prometheus = alertmanager = receiver = None
    print(f"market-ab serve: starting MLServer on {repository} (log: {mlserver.log_path})", flush=True)
    if deployment.not_applied:
        print(f"market-ab serve: left to the cluster: {', '.join(deployment.not_applied)}", flush=True)
    try:
        try:
            mlserver.start(launched=lambda pid: print(f"{LAUNCHED_LINE}, pid {pid}", flush=True))
        except StartInterrupted:
            return 128 + _STOP_REQUESTED.number
        print(f"{MLSERVER_LINE}: REST {mlserver.http_url}, gRPC {mlserver.grpc_address}, metrics "
              f"{mlserver.metrics_url}, pid {mlserver.pid}", flush=True)
        if alerting:
            alerts_dir = options.alerts_dir or (options.state_dir or workdir) / "alerts"
            if retrain_trigger is None and options.on_retrain:
                retrain_trigger = CommandTrigger(options.on_retrain, alerts_dir)
            receiver = AlertReceiver(alerts_dir, retrain_trigger)
            alertmanager = _start_alertmanager(options, receiver, workdir)
        if options.prometheus_port is not None:
            prometheus = _start_prometheus(options, mlserver, rules, workdir, alertmanager)
        return _run(_gateway(options, deployment, mlserver, prometheus, receiver))
    finally:
        if prometheus is not None:
            prometheus.stop()
        if alertmanager is not None:
            alertmanager.stop()
        mlserver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("market-ab serve: stopped", flush=True)


def _start_alertmanager(options: ServeOptions, receiver: AlertReceiver, workdir: Path) -> AlertmanagerProcess:
    """Alertmanager routing to the receivers of the admin port (which opens a moment later; it retries)."""
    admin = f"http://{ADMIN_HOST}:{options.admin_port}/alerts"
    wait = "1s" if options.alert_for else "10s"  # demos and tests: as soon as an alert fires
    config = alertmanager_config(f"{admin}/notify", f"{admin}/retrain", group_wait=wait)
    # loopback only, whatever --host says: whoever can post an alert to it can request a retraining
    alertmanager = AlertmanagerProcess(workdir / "alertmanager", config, options.alertmanager_port, ADMIN_HOST).start()
    print(f"{ALERTMANAGER_LINE} {alertmanager.url}  (pid {alertmanager.pid}; {' or '.join(RETRAIN_ALERTS)} to the "
          f"retraining trigger {admin}/retrain, recorded in {receiver.requests_path}; every alert to the "
          f"notification log {receiver.notifications_path})", flush=True)
    return alertmanager


def _start_prometheus(options: ServeOptions, mlserver: MLServerProcess, rules: dict, workdir: Path,
                      alertmanager: AlertmanagerProcess | None = None):
    """Prometheus scraping the gateway (its port opens a moment later) and MLServer, with the manifests' rules,
    alerting through ``alertmanager``."""
    metrics_address = mlserver.metrics_url.split("//", 1)[1].rsplit("/", 1)[0]
    prometheus = PrometheusProcess(options.prometheus_dir or workdir / "prometheus",
                                   {"gateway": f"{options.host}:{options.http_port}", "mlserver": metrics_address},
                                   rules, options.prometheus_port, options.host, options.scrape_interval,
                                   alertmanagers=[alertmanager.address] if alertmanager else None).start()
    alerts = sum(1 for group in rules["groups"] for rule in group.get("rules") or [] if "alert" in rule)
    print(f"{PROMETHEUS_LINE} {prometheus.url}  (pid {prometheus.pid}; {alerts} alert rules from the manifests"
          f"{f', for: capped at {options.alert_for}' if options.alert_for else ''}; scrapes every "
          f"{options.scrape_interval}; data in {prometheus.folder})", flush=True)
    return prometheus


class _StopRequest(threading.Event):
    number = 0


_STOP_REQUESTED = _StopRequest()


def _remember_signal(number, _frame) -> None:
    _STOP_REQUESTED.number = number
    _STOP_REQUESTED.set()  # read by the wait for MLServer, then by the gateway's loop once it handles signals


def _run(coroutine) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - pinned in setup.cfg
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def _gateway(options: ServeOptions, deployment: Deployment, mlserver: MLServerProcess,
                   prometheus: PrometheusProcess | None = None, receiver: AlertReceiver | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    if _STOP_REQUESTED.is_set():
        stop.set()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gateway = Gateway(deployment, mlserver.grpc_address, set(model_folders(mlserver.repository)), seed=options.seed)
    await gateway.start()
    runner = web.AppRunner(RestDoor(gateway, mlserver.http_url).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.host, options.http_port).start()
    server = grpc.aio.server(options=[("grpc.max_send_message_length", -1),
                                      ("grpc.max_receive_message_length", -1), ("grpc.so_reuseport", 0)])
    dataplane_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(GrpcDoor(gateway), server)
    server.add_insecure_port(f"{options.host}:{options.grpc_port}")
    await server.start()
    admin = None
    if options.admin_port is not None:  # loopback only, whatever --host says
        registrar = ModelRegistrar(deployment, options.models_dir, mlserver.repository, mlserver.http_url,
                                   gateway.models)
        app = AdminDoor(gateway, registrar).app()
        if receiver is not None:
            receiver.routes(app)
        admin = web.AppRunner(app, access_log=None)
        await admin.setup()
        await web.TCPSite(admin, ADMIN_HOST, options.admin_port).start()
        print(f"{ADMIN_LINE} http://{ADMIN_HOST}:{options.admin_port}/admin/experiments", flush=True)

    mlserver_exit = loop.create_future()
    # the MLServer process's end, as an event (a pidfd is readable once the process has exited)
    pidfd = os.pidfd_open(mlserver.pid)
    loop.add_reader(pidfd, lambda: mlserver_exit.done() or mlserver_exit.set_result(None))
    if prometheus is not None:  # ready means watched: a counter born before its first scrape shows no rate
        await asyncio.to_thread(prometheus.wait_for_scrapes, ("gateway", "mlserver"))
    print(f"{READY_LINE}: REST http://{options.host}:{options.http_port}, gRPC {options.host}:{options.grpc_port}; "
          f"pipelines {', '.join(sorted(deployment.plans)) or 'none'}; experiments "
          f"{', '.join(sorted(deployment.experiments)) or 'none'}; models {', '.join(sorted(gateway.models))}",
          flush=True)
    stopped = loop.create_task(stop.wait())
    await asyncio.wait({stopped, mlserver_exit}, return_when=asyncio.FIRST_COMPLETED)
    failed = mlserver_exit.done()
    if failed:
        print(f"market-ab serve: MLServer exited with {mlserver.returncode()}; log:\n{mlserver.log_tail()}",
              flush=True)
    loop.remove_reader(pidfd)
    os.close(pidfd)
    if receiver is not None and isinstance(receiver.trigger, CommandTrigger):
        await asyncio.to_thread(receiver.trigger.stop)  # while the admin port is open: its rollout ends at baseline
    await server.stop(grace=5)
    await gateway.close()  # before the REST door's HTTP session, which its mirrors use
    await runner.cleanup()
    if admin is not None:
        await admin.cleanup()
    stopped.cancel()
    return 1 if failed else 0
