"""Where a retraining applies its Model and Experiment: the local stack's admin port (``market-ab serve``), as
``kubectl apply`` would on a cluster. Applying what is already there changes nothing, so a retraining that is run
again after a crash applies the same documents without harm."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from rollouts.targets import DEFAULT_ADMIN_URL, TargetError

APPLY_TIMEOUT = 300.0  # MLServer loads the model before the admin port answers


class LocalStack:
    def __init__(self, url: str = DEFAULT_ADMIN_URL, timeout: float = APPLY_TIMEOUT):
        self.url, self.timeout = url.rstrip("/"), timeout

    def apply(self, document: dict) -> str:
        """Apply a Model or an Experiment; ``created``, ``unchanged`` or ``updated``. TargetError on a refusal."""
        kind, name = document["kind"], document["metadata"]["name"]
        path = {"Model": "models", "Experiment": "experiments"}.get(kind)
        if path is None:
            raise TargetError(f"the admin port applies Models and Experiments, not {kind}")
        if kind == "Experiment":
            current = self._current(f"{self.url}/admin/experiments/{name}")
            wanted = {c["name"] for c in document["spec"]["candidates"]}
            if current is not None and wanted == {c["name"] for c in current["spec"]["candidates"]}:
                return "unchanged"  # a retraining resumed: the rollout's audit log says where its weights stand
        status = self._call("PUT", f"{self.url}/admin/{path}/{name}", document["spec"])
        return {201: "created", 200: "unchanged" if kind == "Model" else "updated"}.get(status, "updated")

    def _current(self, url: str) -> dict | None:
        try:
            return self._get(url)
        except TargetError as error:
            if " 404 " in str(error):
                return None
            raise

    def _get(self, url: str) -> dict:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            raise TargetError(f"GET {url}: {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise TargetError(f"GET {url}: {getattr(error, 'reason', error)}") from None

    def _call(self, method: str, url: str, body: dict | None = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read())["error"]
            except (ValueError, KeyError):
                message = error.reason
            raise TargetError(f"{method} {url}: {error.code} {message}") from None
        except (urllib.error.URLError, OSError) as error:
            raise TargetError(f"{method} {url}: {getattr(error, 'reason', error)} (is market-ab serve running with "
                              "its admin port?)") from None
