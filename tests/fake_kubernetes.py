"""A fake Kubernetes API server: no cluster runs here, so this stands in for one. It speaks the parts of the protocol
our clients use, over real HTTP, for Seldon's ``experiments`` and ``models`` (``mlops.seldon.io/v1alpha1``) and
``batch/v1`` ``jobs``: bearer-token authentication (a token ``denied`` is authenticated but forbidden, as RBAC would
answer; with ``allowed``, only those (resource, verb) pairs pass, as a Role would grant them), GET of one object, GET
of a list with an equality label selector, POST (create: 409 AlreadyExists when the name is taken; ``status`` is the
controllers', not the creator's), and PATCH with ``application/merge-patch+json`` (RFC 7386 semantics,
``metadata.resourceVersion`` as a precondition: 409 when it is stale), answering errors with a ``Status`` object as
the API server does. ``calls`` records each authorised request as (verb, resource), what a Role must grant.

No controller runs either: a test sets a Job's ``status`` as the Job controller would, and ``ready_models`` makes a
created Model Ready at once, as Seldon's scheduler would report it once loaded."""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN = "rollout-token"
# (group, version, plural) -> kind
SERVED = {("mlops.seldon.io", "v1alpha1", "experiments"): "Experiment",
          ("mlops.seldon.io", "v1alpha1", "models"): "Model",
          ("batch", "v1", "jobs"): "Job"}
PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)"
                  r"(?:/(?P<name>[^/]+))?$")
READY = [{"type": "ModelReady", "status": "True"}, {"type": "Ready", "status": "True"}]


def merge_patch(target, patch):
    """RFC 7386: objects merge key by key, null removes, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _selected(obj: dict, selector: dict[str, str]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


class FakeKubernetes:
    def __init__(self, objects: dict[tuple[str, str], dict] | None = None, *,
                 models: dict[tuple[str, str], dict] | None = None, jobs: dict[tuple[str, str], dict] | None = None,
                 ready_models: bool = False, allowed: set[tuple[str, str]] | None = None):
        """``objects``: (namespace, name) -> Experiment; ``models`` and ``jobs`` likewise. ``allowed``: the
        (resource, verb) pairs a Role grants, e.g. ("jobs.batch", "create"); None lets every authenticated call
        pass."""
        self.objects = objects if objects is not None else {}
        self.models = models if models is not None else {}
        self.jobs = jobs if jobs is not None else {}
        self.stores = {"experiments": self.objects, "models": self.models, "jobs": self.jobs}
        self.ready_models, self.allowed = ready_models, allowed
        self.patches, self.calls, self.lock = [], [], threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified on every call: what ``wait`` waits on
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                                    "message": message, "code": code})

            def _route(self, method: str):
                """(store, resource, kind, namespace, name, query) of an authorised request, else None (answered)."""
                auth = self.headers.get("Authorization", "")
                if auth not in (f"Bearer {TOKEN}", "Bearer denied"):
                    return self._status(401, "Unauthorized", "Unauthorized")
                url = urllib.parse.urlsplit(self.path)
                match = PATH.match(url.path)
                served = match and SERVED.get((match["group"], match["version"], match["plural"]))
                if not served:
                    return self._status(404, "NotFound", "the server could not find the requested resource")
                resource = f"{match['plural']}.{match['group']}"  # as RBAC names it: jobs.batch
                name = match["name"]
                verb = {("GET", True): "get", ("GET", False): "list", ("POST", False): "create",
                        ("PATCH", True): "patch"}.get((method, name is not None))
                if verb is None:
                    return self._status(405, "MethodNotAllowed", f"{method} is not supported here")
                if auth == "Bearer denied" or (fake.allowed is not None and (resource, verb) not in fake.allowed):
                    return self._status(403, "Forbidden", f'{resource} "{name or ""}" is forbidden: cannot {verb} '
                                                          f'resource "{match["plural"]}" in API group '
                                                          f'"{match["group"]}"')
                with fake.lock:
                    fake.calls.append((verb, resource))
                    fake.changed.notify_all()
                query = urllib.parse.parse_qs(url.query)
                return fake.stores[match["plural"]], resource, served, match["namespace"], name, query

            def _missing(self, resource: str, name: str) -> None:
                self._status(404, "NotFound", f'{resource} "{name}" not found')

            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

            def do_GET(self):  # noqa: N802
                route = self._route("GET")
                if route is None:
                    return
                store, resource, kind, namespace, name, query = route
                with fake.lock:
                    if name is not None:
                        if (namespace, name) not in store:
                            return self._missing(resource, name)
                        return self._answer(200, store[(namespace, name)])
                    selector = {}
                    for term in ",".join(query.get("labelSelector", [])).split(","):
                        if term:
                            key, equals, value = term.replace("==", "=").partition("=")
                            if not equals or key.endswith("!"):
                                return self._status(400, "BadRequest", f"unsupported label selector {term!r}")
                            selector[key] = value
                    items = [obj for (ns, _), obj in store.items() if ns == namespace and _selected(obj, selector)]
                    self._answer(200, {"kind": f"{kind}List", "metadata": {"resourceVersion": "1"},
                                       "items": items})

            def do_POST(self):  # noqa: N802
                route = self._route("POST")
                if route is None:
                    return
                store, resource, kind, namespace, _, _ = route
                created = self._body()
                name = created.get("metadata", {}).get("name")
                with fake.lock:
                    if (namespace, name) in store:
                        return self._status(409, "AlreadyExists", f'{resource} "{name}" already exists')
                    created = copy.deepcopy(created)
                    created["metadata"] = {**created["metadata"], "namespace": namespace, "resourceVersion": "1",
                                           "uid": f"uid-{len(fake.calls)}",
                                           "creationTimestamp": "2026-01-01T00:00:00Z"}
                    created["status"] = {"conditions": list(READY)} if kind == "Model" and fake.ready_models else {}
                    store[(namespace, name)] = created
                    fake.changed.notify_all()
                    self._answer(201, created)

            def do_PATCH(self):  # noqa: N802
                route = self._route("PATCH")
                if route is None:
                    return
                store, resource, _, namespace, name, _ = route
                key = (namespace, name)
                if key not in store:
                    return self._missing(resource, name)
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", "expected application/merge-patch+json")
                patch = self._body()
                with fake.lock:
                    current = store[key]
                    given = (patch.get("metadata") or {}).get("resourceVersion")
                    if given is not None and given != current["metadata"]["resourceVersion"]:
                        return self._status(409, "Conflict", "the object has been modified; please apply your "
                                                             "changes to the latest version and try again")
                    updated = merge_patch(current, patch)
                    updated["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
                    store[key] = updated
                    fake.patches.append(patch)
                    fake.changed.notify_all()
                    self._answer(200, updated)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, until, timeout: float = 60.0) -> bool:
        """Until ``until()`` holds (it is asked again after each call the server answers), at most ``timeout``."""
        with self.changed:
            return self.changed.wait_for(until, timeout)

    def kubeconfig(self, path: Path, namespace: str, token: str = TOKEN) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "rollout", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "rollout", "namespace": namespace}}]}))
        return path


def experiment(name: str, namespace: str, candidates: dict[str, int], **spec) -> dict:
    return {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {"candidates": [{"name": n, "weight": w} for n, w in candidates.items()], **spec}}


def model(name: str, namespace: str, **spec) -> dict:
    return {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}, "spec": spec,
            "status": {"conditions": list(READY)}}
