"""Where Alertmanager's notifications arrive: a log a person can read, and the retraining trigger.

Alertmanager POSTs its webhook payload (``version`` 4: ``status``, ``alerts`` [{``status``, ``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``fingerprint``}], ``groupLabels``, ...) to

- ``/alerts/notify``: every alert, one readable line each, appended to ``notifications.log``;
- ``/alerts/retrain``: the alerts routed to retraining. Each firing alert is one request to retrain, known by its
  fingerprint and the time it started firing: Alertmanager repeats a notification while the alert fires, and a
  repeat starts nothing new. A new request is appended to ``retrain-requests.jsonl`` (fsynced before the reply,
  so an acknowledged request is never lost, and read back at start, so a restart does not start it again) and
  handed to ``trigger``.

The same app runs on the local stack's admin port (``market-ab serve``) and alone on a cluster
(``market-ab alerts receive``), where the AlertmanagerConfig of ``manifests/`` sends to it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from seldon_market_ab import metrics

from .rest import error_response

logger = logging.getLogger(__name__)
NOTIFICATIONS, REQUESTS = "notifications.log", "retrain-requests.jsonl"


def _counters() -> dict:
    return {
        "received": metrics.counter("alert_notifications_total", "Alerts received from Alertmanager, by receiver "
                                    "and status", ["receiver", "status"]),
        "requests": metrics.counter("retrain_requests_total", "Retraining requests, by outcome (new, repeated)",
                                    ["outcome"]),
    }


def _alerts(payload) -> list[dict]:
    """The payload's alerts; ValueError naming what was expected."""
    alerts = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(alerts, list) or not all(isinstance(a, dict) and isinstance(a.get("labels"), dict)
                                               for a in alerts):
        raise ValueError("expected Alertmanager's webhook payload: an object whose 'alerts' is a list of objects, "
                         "each with 'labels'")
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


class AlertReceiver:
    def __init__(self, folder: Path, trigger: Callable[[dict], None] | None = None):
        """``trigger(request)`` is called once per new retraining request (``{"key", "received", "alert"}``), in a
        thread of its own so that Alertmanager's call returns at once."""
        self.folder, self.trigger = Path(folder), trigger
        self.folder.mkdir(parents=True, exist_ok=True)
        self.notifications_path, self.requests_path = self.folder / NOTIFICATIONS, self.folder / REQUESTS
        self._lock = threading.Lock()
        self._known = {json.loads(line)["key"] for line in self._lines(self.requests_path)}
        self._metrics = _counters()

    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            return [line for line in path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def routes(self, app: web.Application) -> web.Application:
        app.router.add_post("/alerts/notify", self.notify)
        app.router.add_post("/alerts/retrain", self.retrain)
        app.router.add_get("/alerts/retrain", self.list_requests)
        return app

    def app(self) -> web.Application:
        return self.routes(web.Application(client_max_size=4 * 1024 * 1024))

    async def _payload(self, request: web.Request) -> list[dict]:
        try:
            return _alerts(json.loads(await request.read()))
        except json.JSONDecodeError as error:
            raise ValueError(f"expected Alertmanager's webhook payload as JSON: {error}") from None

    async def notify(self, request: web.Request) -> web.Response:
        try:
            alerts = await self._payload(request)
        except ValueError as error:
            return error_response(400, str(error))
        received = time.time()
        self._append(self.notifications_path, [notification_line(a, received) for a in alerts])
        for alert in alerts:
            self._metrics["received"].labels("notifications", str(alert.get("status", "unknown"))).inc()
        return web.json_response({"received": len(alerts)})

    async def retrain(self, request: web.Request) -> web.Response:
        try:
            alerts = await self._payload(request)
        except ValueError as error:
            return error_response(400, str(error))
        received, new = time.time(), []
        with self._lock:  # the check and the record as one step: a repeat arriving meanwhile is a repeat
            for alert in alerts:
                status = str(alert.get("status", "unknown"))
                self._metrics["received"].labels("retrain", status).inc()
                key = request_key(alert)
                if status != "firing" or key in self._known:
                    self._metrics["requests"].labels("repeated" if key in self._known else "ignored").inc()
                    continue
                self._known.add(key)
                new.append({"key": key, "received": received, "alert": alert})
            self._append(self.requests_path, [json.dumps(r, sort_keys=True) for r in new])
        for retrain in new:
            self._metrics["requests"].labels("new").inc()
            logger.warning("retraining requested by %s", notification_line(retrain["alert"], received))
            if self.trigger is not None:
                threading.Thread(target=self._run_trigger, args=(retrain,), name="retrain-trigger", daemon=True).start()
        return web.json_response({"received": len(alerts), "new_requests": [r["key"] for r in new]})

    async def list_requests(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": [json.loads(line) for line in self._lines(self.requests_path)]})

    def _run_trigger(self, retrain: dict) -> None:
        try:
            self.trigger(retrain)
        except Exception:  # noqa: BLE001 - the request stays recorded; the failure is the trigger's to report
            logger.exception("the retraining trigger failed for %s", retrain["key"])

    @staticmethod
    def _append(path: Path, lines: list[str]) -> None:
        if not lines:
            return
        with open(path, "a") as file:
            file.write("".join(line + "\n" for line in lines))
            file.flush()
            os.fsync(file.fileno())
