"""The local stack's Prometheus: the distribution's ``prometheus`` binary scraping the gateway and MLServer, with the
alert rules of the manifests' PrometheusRule loaded as they are (no second copy of an expression).

``rule_groups`` and ``scrape_config`` are pure: they turn manifests and addresses into Prometheus's two files.
``PrometheusProcess`` runs the binary and waits until it is ready (``binaries.LocalBinary``); ``PrometheusAPI`` asks
it what it saw.
"""

from __future__ import annotations

import copy
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from .binaries import LocalBinary

DEFAULT_PORT = 9090
DEFAULT_SCRAPE_INTERVAL = "2s"
INSTALL_HINT = ("install the distribution's package (Debian/Ubuntu: apt-get install prometheus), or run without it: "
                "--no-prometheus")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def duration_seconds(text: str) -> float:
    """A Prometheus duration (``90s``, ``1h30m``) in seconds; ValueError when it is not one."""
    text = str(text).strip()
    if not text or _DURATION.sub("", text):
        raise ValueError(f"{text!r} is not a Prometheus duration such as 30s, 10m or 1h30m")
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION.findall(text))


def rule_groups(documents: list[tuple[str, dict]], alert_for: str | None = None) -> dict:
    """The ``groups`` of every PrometheusRule among ``documents`` (``load_documents``' pairs), as a rule file.
    ``alert_for`` caps every alert's ``for:`` (for demos and tests: the expressions stay as they are)."""
    cap = duration_seconds(alert_for) if alert_for else None
    groups = []
    for _, doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
            for group in copy.deepcopy((doc.get("spec") or {}).get("groups") or []):
                for rule in group.get("rules") or []:
                    if cap is not None and "alert" in rule and duration_seconds(rule.get("for", "0s")) > cap:
                        rule["for"] = alert_for
                groups.append(group)
    return {"groups": groups}


def scrape_config(targets: dict[str, str], interval: str = DEFAULT_SCRAPE_INTERVAL,
                  rule_file: str | None = "rules.yaml", alertmanagers: list[str] | None = None) -> dict:
    """``targets``: job name -> ``host:port`` serving ``/metrics``; ``alertmanagers``: ``host:port`` of each."""
    duration_seconds(interval)
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            **({"rule_files": [rule_file]} if rule_file else {}),
            **({"alerting": {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}}
               if alertmanagers else {}),
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [address]}]}
                               for job, address in targets.items()]}


class PrometheusProcess(LocalBinary):
    label, package, names, install_hint = "prometheus", "prometheus", ("prometheus",), INSTALL_HINT
    port_option, off_option = "--prometheus-port", "--no-prometheus"

    def __init__(self, folder: Path, targets: dict[str, str], rules: dict, port: int = DEFAULT_PORT,
                 host: str = "127.0.0.1", interval: str = DEFAULT_SCRAPE_INTERVAL, ready_timeout: float = 60.0,
                 alertmanagers: list[str] | None = None):
        """``folder`` holds its configuration, log and data (``data/``); ``alertmanagers``: ``host:port`` of the
        Alertmanagers its alerts go to."""
        super().__init__(folder, port, host, ready_timeout)
        (self.folder / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(
            scrape_config(targets, interval, alertmanagers=alertmanagers), sort_keys=False))

    def command(self) -> list[str]:
        return [self.binary, f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}", f"--web.listen-address={self.host}:{self.port}"]

    def wait_for_scrapes(self, jobs, timeout: float = 60.0) -> bool:
        """Until each of ``jobs`` has been scraped once with success (Prometheus discovers its targets a few seconds
        after it starts), at most ``timeout`` seconds; whether it was."""
        api, deadline = PrometheusAPI(self.url), time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                scraped = {r["metric"].get("job") for r in api.query("up == 1")}
            except (OSError, RuntimeError, ValueError):
                scraped = set()
            if set(jobs) <= scraped:
                return True
            time.sleep(0.2)  # polling its API, with a deadline
        return False


class PrometheusAPI:
    """The HTTP API calls the stack's users make: instant and range queries, alerts and rules."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def _get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=self.timeout) as answer:
            body = json.loads(answer.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """``[{"metric": {...labels}, "value": float}]`` at ``at`` (epoch seconds; default now)."""
        return [{"metric": r["metric"], "value": float(r["value"][1])}
                for r in self._get("/api/v1/query", query=expr, time=at)["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """``[{"metric": {...labels}, "values": [(epoch seconds, float), ...]}]``."""
        return [{"metric": r["metric"], "values": [(float(t), float(v)) for t, v in r["values"]]}
                for r in self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]]

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing): ``labels``, ``state``, ``activeAt``, ``value``."""
        return self._get("/api/v1/alerts")["alerts"]

    def alert_rules(self) -> list[dict]:
        return [rule for group in self._get("/api/v1/rules", type="alert")["groups"] for rule in group["rules"]]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]
