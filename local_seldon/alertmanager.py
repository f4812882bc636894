"""The local stack's Alertmanager: the distribution's ``prometheus-alertmanager`` beside its Prometheus, routing as
a production one would.

``alertmanager_config`` is pure: it routes the input-drift alert (``MarketAbInputDrift``) and any alert labelled
``retrain="true"`` to the retraining trigger, and every alert to the notification log; both are webhooks of the
stack's admin port (``alert_receiver.AlertReceiver``). ``AlertmanagerProcess`` runs the binary, without its
high-availability gossip (one instance), until it is ready.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import yaml

from .binaries import LocalBinary
from .prometheus import duration_seconds

DEFAULT_PORT = 9093
INSTALL_HINT = ("install the distribution's package (Debian/Ubuntu: apt-get install prometheus-alertmanager), or "
                "run without it: --no-alertmanager")
RETRAIN_ALERTS = ('alertname="MarketAbInputDrift"', 'retrain="true"')  # each routed to the retraining trigger
MAX_ALERTS = 100


def alertmanager_config(notify_url: str, retrain_url: str, group_wait: str = "10s", group_interval: str = "1m",
                        repeat_interval: str = "4h") -> dict:
    """Alertmanager's configuration: every alert to ``notify_url`` (resolved ones too), and the retraining alerts
    also to ``retrain_url`` (firing ones only: a resolved drift retrains nothing).

    >>> config = alertmanager_config("http://h/notify", "http://h/retrain", group_wait="1s")
    >>> for route in config["route"]["routes"]:
    ...     print(route["receiver"], route.get("matchers"), route.get("continue"))
    retrain ['alertname="MarketAbInputDrift"'] True
    retrain ['retrain="true"'] True
    notifications None None
    """
    for duration in (group_wait, group_interval, repeat_interval):
        duration_seconds(duration)
    return {
        "route": {"receiver": "notifications", "group_by": ["alertname", "model"], "group_wait": group_wait,
                  "group_interval": group_interval, "repeat_interval": repeat_interval,
                  "routes": [*({"receiver": "retrain", "matchers": [matcher], "continue": True}
                               for matcher in RETRAIN_ALERTS),
                             {"receiver": "notifications"}]},
        # at most MAX_ALERTS alerts a call: the admin port takes bodies of up to a megabyte
        "receivers": [{"name": "notifications", "webhook_configs": [{"url": notify_url, "send_resolved": True,
                                                                     "max_alerts": MAX_ALERTS}]},
                      {"name": "retrain", "webhook_configs": [{"url": retrain_url, "send_resolved": False,
                                                               "max_alerts": MAX_ALERTS}]}],
    }


class AlertmanagerProcess(LocalBinary):
    label, package = "alertmanager", "prometheus-alertmanager"
    names, install_hint = ("prometheus-alertmanager", "alertmanager"), INSTALL_HINT
    port_option, off_option = "--alertmanager-port", "--no-alertmanager"

    def __init__(self, folder: Path, config: dict, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 ready_timeout: float = 60.0):
        super().__init__(folder, port, host, ready_timeout)
        (self.folder / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [self.binary, f"--config.file={self.folder / 'alertmanager.yml'}",
                f"--storage.path={self.folder / 'data'}", f"--web.listen-address={self.host}:{self.port}",
                "--cluster.listen-address="]  # one instance: no gossip port to bind

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alerts(self) -> list[dict]:
        """The alerts it holds (API v2): ``labels``, ``status.state``, ``receivers``."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as answer:
            return json.loads(answer.read())
