"""Where a retraining applies its Model and Experiment: the local stack's admin port (``market-ab serve``), or a
cluster's API server (``--kubernetes``). Applying what is already there changes nothing, so a retraining that is run
again after a crash applies the same documents without harm."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from seldon_market_ab.rollouts.kubernetes_target import (
    GROUP,
    REQUEST_TIMEOUT,
    VERSION,
    _custom_objects_api,
    default_namespace,
)
from seldon_market_ab.rollouts.targets import DEFAULT_ADMIN_URL, Conflict, TargetError

APPLY_TIMEOUT = 300.0  # MLServer loads the model before the admin port answers
READY_TIMEOUT, READY_POLL = 300.0, 5.0  # on a cluster, Seldon's agent downloads and loads it after the create
PLURALS = {"Model": "models", "Experiment": "experiments"}
RBAC = "create, get and patch on models and experiments.mlops.seldon.io"


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


class NotFound(TargetError):
    """No such object (404)."""


class KubernetesStack:
    """A cluster's Models and Experiments (``mlops.seldon.io/v1alpha1``), through the official client's
    ``CustomObjectsApi`` (in-cluster credentials, else the kubeconfig), as ``kubectl create`` then a look:

    - a document is created; when its name is taken (409 AlreadyExists) the object is read;
    - a Model with the document's spec is ``unchanged``; one with another spec is refused: a served Model is not
      replaced (a new version is a Model of its own);
    - an Experiment with the document's candidates is ``unchanged`` (a retraining resumed: the rollout's audit log says
      where the weights stand); another one's spec is replaced by a JSON merge patch carrying the resourceVersion read
      (a 409 when it changed meanwhile: read again), ``updated``;
    - a Model is waited for until Seldon reports it ``Ready``, at most ``ready_timeout`` seconds.

    The ServiceAccount needs create, get and patch on models and experiments (``manifests/retraining/role.yaml``).
    """

    def __init__(self, namespace: str | None = None, api=None, ready_timeout: float = READY_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 say: Callable[[str], None] | None = None):
        """``api``: a ``kubernetes.client.CustomObjectsApi`` (default: one from in-cluster credentials, else the
        kubeconfig); ``clock`` and ``sleep`` time the readiness wait; ``say`` is told when it waits."""
        self.namespace = namespace or default_namespace()
        self.api = api or _custom_objects_api()
        self.ready_timeout, self.clock, self.sleep, self.say = ready_timeout, clock, sleep, say or (lambda _: None)

    def apply(self, document: dict) -> str:
        """Apply a Model or an Experiment; ``created``, ``unchanged`` or ``updated``. TargetError on a refusal."""
        kind, name = document["kind"], document["metadata"]["name"]
        plural = PLURALS.get(kind)
        if plural is None:
            raise TargetError(f"a retraining applies Models and Experiments, not {kind}")
        body = {**document, "metadata": {**document["metadata"], "namespace": self.namespace}}
        try:
            self._call("create", plural, name, body=body)
            outcome = "created"
        except Conflict:  # on a create, 409 is AlreadyExists
            outcome = self._same_model(document) if kind == "Model" else self._take_over(document)
        if kind == "Model":
            self.wait_ready(name)
        return outcome

    def wait_ready(self, name: str) -> None:
        """Until the Model's ``Ready`` condition is True; TargetError with Seldon's last word after the timeout."""
        deadline, said = self.clock() + self.ready_timeout, False
        while True:
            status = self._call("get", "models", name).get("status") or {}
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            if ready.get("status") == "True":
                return
            if self.clock() >= deadline:
                why = ready.get("message") or ready.get("reason") or "no status reported"
                raise TargetError(f"Model/{name} not Ready after {self.ready_timeout:.0f} s ({why}); kubectl describe "
                                  f"model {name} -n {self.namespace} says why")
            if not said:
                self.say(f"Model/{name}: waiting for Seldon to report it Ready (at most {self.ready_timeout:.0f} s)")
                said = True
            self.sleep(READY_POLL)

    def add_arm(self, outcomes: str, arm: str, default_arms: tuple[str, ...]) -> tuple[str, list[str]]:
        """Make ``arm`` one of the arms the outcomes Model counts (its ``arms`` parameter, comma-separated; without
        one, ``default_arms``), by a merge patch of its parameters at the resourceVersion read. ``("added", arms)``,
        ``("unchanged", arms)``, or ``("absent", [])`` when there is no such Model."""
        for attempt in range(3):
            try:
                current = self._call("get", "models", outcomes)
            except NotFound:
                return "absent", []
            parameters = list(current["spec"].get("parameters") or [])
            given = next((p for p in parameters if p.get("name") == "arms"), None)
            arms = [a.strip() for a in str(given["value"]).split(",") if a.strip()] if given else list(default_arms)
            if arm in arms:
                return "unchanged", arms
            arms.append(arm)
            parameters = [p for p in parameters if p is not given] + [{"name": "arms", "value": ",".join(arms)}]
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                     "spec": {"parameters": parameters}}  # a list: the merge patch replaces it whole
            try:
                self._call("patch", "models", outcomes, body=patch)
                return "added", arms
            except Conflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _same_model(self, document: dict) -> str:
        name = document["metadata"]["name"]
        current = self._call("get", "models", name).get("spec") or {}
        # the document's fields only: what the API server or Seldon adds is not ours to compare
        differs = sorted(key for key, value in document["spec"].items() if current.get(key) != value)
        if differs:
            raise TargetError(f"Model/{name} exists with another {', '.join(differs)}: a served Model is not replaced "
                              "(a new version is a Model of its own); delete it by hand if nothing serves it")
        return "unchanged"

    def _take_over(self, document: dict) -> str:
        name, spec = document["metadata"]["name"], document["spec"]
        for attempt in range(3):
            current = self._call("get", "experiments", name)
            if {c["name"] for c in spec["candidates"]} == {c["name"] for c in current["spec"].get("candidates") or []}:
                return "unchanged"
            # the document's spec whole: fields it lacks are removed (null), others replaced
            replaced = {**{key: None for key in current["spec"] if key not in spec}, **spec}
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": replaced}
            try:
                self._call("patch", "experiments", name, body=patch)
                return "updated"
            except Conflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _call(self, verb: str, plural: str, name: str, **body) -> dict:
        """``verb``_namespaced_custom_object; the API's refusals as TargetError (Conflict on 409, NotFound on 404),
        each naming what was refused and, for a 403, the RBAC it needs."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as ConnectionTrouble

        method = getattr(self.api, f"{verb}_namespaced_custom_object")
        where = (GROUP, VERSION, self.namespace, plural) + (() if verb == "create" else (name,))
        what = f"{verb} {plural}/{name} in namespace {self.namespace}"
        try:
            return method(*where, **body, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            reason = {401: "not authenticated (credentials?)",
                      403: f"forbidden: the ServiceAccount needs {RBAC} in namespace {self.namespace} "
                           "(manifests/retraining/role.yaml)",
                      404: "not found",
                      409: "exists already" if verb == "create" else "changed meanwhile"}.get(error.status,
                                                                                              error.reason)
            kind = {404: NotFound, 409: Conflict}.get(error.status, TargetError)
            raise kind(f"{what}: {error.status} {reason}") from None
        except (OSError, ConnectionTrouble) as error:
            raise TargetError(f"{what}: {error}") from None
