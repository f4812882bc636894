"""Where Alertmanager's notifications arrive: a log a person can read, and the retraining trigger.

Alertmanager POSTs its webhook payload (``version`` 4: ``status``, ``alerts`` [{``status``, ``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``fingerprint``}], ``groupLabels``, ...) to

- ``/alerts/notify``: every alert, one readable line each, appended to ``notifications.log``;
- ``/alerts/retrain``: the alerts routed to retraining. Each firing alert is one request to retrain, known by its
  fingerprint and the time it started firing: Alertmanager repeats a notification while the alert fires, and a
  repeat starts nothing new. A new request is appended to ``retrain-requests.jsonl``, fsynced before the reply (a
  failed write is a 500, which Alertmanager retries, and the request stays new) and read back at start (a restart
  does not record it again); then it is handed to ``trigger``, once, at most (a trigger that must not be lost
  keeps its own record).

Files are written off the event loop: on the local stack the receiver shares its loop with the inference ports.
The same app runs on the local stack's admin port (``market-ab serve``) and alone on a cluster (``market-ab alerts
receive``), where the AlertmanagerConfig of ``manifests/`` sends to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from seldon_market_ab import metrics

logger = logging.getLogger(__name__)
NOTIFICATIONS, REQUESTS = "notifications.log", "retrain-requests.jsonl"
MAX_BODY = 4 * 1024 * 1024


def _counters() -> dict:
    return {
        "received": metrics.counter("alert_notifications_total", "Alerts received from Alertmanager, by receiver "
                                    "and status", ["receiver", "status"]),
        "requests": metrics.counter("retrain_requests_total", "Retraining requests, by outcome (new, repeated, "
                                    "ignored: not firing)", ["outcome"]),
    }


def error(status: int, message: str) -> web.Response:
    """The protocol's error shape, ``{"error": ...}``."""
    return web.json_response({"error": message}, status=status)


def _alerts(payload) -> list[dict]:
    """The payload's alerts; ValueError naming what was expected."""
    alerts = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(alerts, list) or not all(
            isinstance(a, dict) and isinstance(a.get("labels"), dict)
            and isinstance(a.get("annotations", {}), dict) for a in alerts):
        raise ValueError("expected Alertmanager's webhook payload: an object whose 'alerts' is a list of objects, "
                         "each with 'labels' (and 'annotations', if any) an object")
    return alerts


def notification_line(alert: dict, received: float) -> str:
    """One readable line per alert.

    >>> notification_line({"status": "firing", "labels": {"alertname": "A", "model": "m", "severity": "page"},
    ...                    "annotations": {"summary": "m is down"}, "startsAt": "2026-12-07T06:00:00Z"}, 0)
    '1970-01-01T00:00:00Z FIRING A model=m severity=page since 2026-12-07T06:00:00Z: m is down'
    """
    labels = dict(alert["labels"])
    name = labels.pop("alertname", "?")
    described = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    summary = (alert.get("annotations") or {}).get("summary", "")
    return (f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(received))} {str(alert.get('status', '?')).upper()} "
            f"{name} {described} since {alert.get('startsAt', '?')}" + (f": {summary}" if summary else ""))


def request_key(alert: dict) -> str:
    """What makes two notifications one request: the alert (its fingerprint, else its labels) and when it began
    firing."""
    identity = alert.get("fingerprint") or json.dumps(alert["labels"], sort_keys=True)
    return f"{identity}@{alert.get('startsAt', '')}"


def read_requests(path: Path) -> list[dict]:
    """The recorded requests. A last line without its newline was never acknowledged (the reply comes after the
    fsync of a whole line): it is cut off, so that the next request starts on a line of its own. A damaged line
    before it is an error naming the file and the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with open(path, "r+b") as file:
            file.truncate(len(data))
            os.fsync(file.fileno())
    requests = []
    for number, line in enumerate(data.decode().splitlines(), 1):
        try:
            requests.append(json.loads(line))
        except json.JSONDecodeError as problem:
            raise ValueError(f"{path}:{number}: not a recorded request ({problem}); move the file aside to start "
                             "over") from None
    return requests


class AlertReceiver:
    def __init__(self, folder: Path, trigger: Callable[[dict], None] | None = None):
        """``trigger(request)`` is called once per new retraining request (``{"key", "received", "alert"}``), in a
        thread of its own so that Alertmanager's call returns at once."""
        self.folder, self.trigger = Path(folder), trigger
        self.folder.mkdir(parents=True, exist_ok=True)
        self.notifications_path, self.requests_path = self.folder / NOTIFICATIONS, self.folder / REQUESTS
        self._known = {request["key"] for request in read_requests(self.requests_path)}
        self._lock = asyncio.Lock()  # from the check to the record: a repeat arriving meanwhile waits, then repeats
        self._written = asyncio.Condition()  # notified after every write, for those waiting on one
        self._metrics = _counters()

    def routes(self, app: web.Application) -> web.Application:
        app.router.add_post("/alerts/notify", self.notify)
        app.router.add_post("/alerts/retrain", self.retrain)
        app.router.add_get("/alerts/retrain", self.list_requests)
        app.router.add_get("/alerts/notify", self.list_notifications)
        app.router.add_get("/alerts/healthz", self.healthz)
        return app

    def app(self) -> web.Application:
        return self.routes(web.Application(client_max_size=MAX_BODY))

    async def _payload(self, request: web.Request) -> list[dict]:
        try:
            return _alerts(json.loads(await request.read()))
        except json.JSONDecodeError as problem:
            raise ValueError(f"expected Alertmanager's webhook payload as JSON: {problem}") from None

    async def notify(self, request: web.Request) -> web.Response:
        try:
            alerts = await self._payload(request)
        except ValueError as problem:
            return error(400, str(problem))
        received = time.time()
        try:
            await asyncio.to_thread(self._append, self.notifications_path,
                                    [notification_line(a, received) for a in alerts])
        except OSError as problem:
            return error(500, f"the notification log could not be written: {problem}; Alertmanager will retry")
        await self._wrote()
        for alert in alerts:
            self._metrics["received"].labels("notifications", str(alert.get("status", "unknown"))).inc()
        return web.json_response({"received": len(alerts)})

    async def retrain(self, request: web.Request) -> web.Response:
        try:
            alerts = await self._payload(request)
        except ValueError as problem:
            return error(400, str(problem))
        received, new, outcomes = time.time(), {}, []
        async with self._lock:
            for alert in alerts:
                key = request_key(alert)
                if str(alert.get("status")) != "firing":
                    outcomes.append("ignored")
                elif key in self._known or key in new:
                    outcomes.append("repeated")
                else:
                    new[key] = {"key": key, "received": received, "alert": alert}
                    outcomes.append("new")
            try:
                await asyncio.to_thread(self._append, self.requests_path,
                                        [json.dumps(r, sort_keys=True) for r in new.values()])
            except OSError as problem:  # nothing recorded: the retry finds the requests new
                return error(500, f"the retraining requests could not be recorded: {problem}; Alertmanager will "
                                  "retry")
            self._known.update(new)
        await self._wrote()
        for alert in alerts:
            self._metrics["received"].labels("retrain", str(alert.get("status", "unknown"))).inc()
        for outcome in outcomes:
            self._metrics["requests"].labels(outcome).inc()
        for retrain in new.values():
            logger.warning("retraining requested by %s", notification_line(retrain["alert"], received))
            if self.trigger is not None:
                threading.Thread(target=self._run_trigger, args=(retrain,), name="retrain-trigger", daemon=True).start()
        return web.json_response({"received": len(alerts), "new_requests": list(new)})

    async def list_requests(self, request: web.Request) -> web.Response:
        """The recorded requests; with ``?at_least=N&wait=S``, once there are N, or after S seconds (a watch)."""
        requests = await self._watch(request, lambda: asyncio.to_thread(read_requests, self.requests_path))
        return requests if isinstance(requests, web.Response) else web.json_response({"requests": requests})

    async def list_notifications(self, request: web.Request) -> web.Response:
        """The notification log's lines; ``?at_least=N&wait=S`` as for the requests."""
        lines = await self._watch(request, lambda: asyncio.to_thread(self._lines, self.notifications_path))
        return lines if isinstance(lines, web.Response) else web.json_response({"notifications": lines})

    async def _watch(self, request: web.Request, read):
        try:
            at_least = int(request.query.get("at_least", 0))
            wait = min(float(request.query.get("wait", 0)), 300.0)
        except ValueError:
            return error(400, "expected integer 'at_least' and seconds 'wait' (at most 300)")
        deadline = asyncio.get_running_loop().time() + wait
        async with self._written:
            while len(found := await read()) < at_least:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._written.wait(), left)
                except TimeoutError:
                    break
        return found

    async def _wrote(self) -> None:
        async with self._written:
            self._written.notify_all()

    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            return path.read_text().splitlines()
        except FileNotFoundError:
            return []

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def _run_trigger(self, retrain: dict) -> None:
        try:
            self.trigger(retrain)
        except Exception:  # noqa: BLE001 - the request stays recorded; the failure is the trigger's to report
            logger.exception("the retraining trigger failed for %s", retrain["key"])

    @staticmethod
    def _append(path: Path, lines: list[str]) -> None:
        if not lines:
            return
        created = not path.exists()
        with open(path, "a") as file:
            file.write("".join(line + "\n" for line in lines))
            file.flush()
            os.fsync(file.fileno())
        if created:  # the new file's name, durable too
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


class CommandTrigger:
    """A retraining request's trigger that runs ``command`` with ``--alert KEY`` appended (``market-ab serve
    --on-retrain``), its output in ``log_dir/retrain-<n>.log``. The command keeps its own ledger, so it is the one
    that knows whether the alert was handled; ``stop`` sends SIGTERM to those still running and waits for them."""

    def __init__(self, command: list[str], log_dir: Path, stop_timeout: float = 150.0):
        self.command, self.log_dir, self.stop_timeout = list(command), Path(log_dir), stop_timeout
        self.running: list = []
        self.closed = False
        self._lock = threading.Lock()

    def __call__(self, request: dict) -> int | None:
        import re
        import subprocess

        with self._lock:
            if self.closed:  # the stack is stopping: the request stays recorded, its retraining not started
                logger.warning("retraining for %s not started: the stack is stopping", request["key"])
                return None
            log_path = self.log_dir / f"retrain-{re.sub(r'[^A-Za-z0-9.@-]', '_', request['key'])}.log"
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as log:
                process = subprocess.Popen([*self.command, "--alert", request["key"]], stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.running.append(process)
        logger.info("retraining for %s started (pid %d, log %s)", request["key"], process.pid, log_path)
        code = process.wait()
        logger.info("retraining for %s ended with %d (log %s)", request["key"], code, log_path)
        return code

    def stop(self) -> None:
        with self._lock:
            self.closed = True
            running = [p for p in self.running if p.poll() is None]
        for process in running:
            process.terminate()  # a rollout ends aborted, the baseline at 100
        for process in running:
            try:
                process.wait(self.stop_timeout)
            except Exception:  # noqa: BLE001 - it would not stop: kill it
                process.kill()
                process.wait()
