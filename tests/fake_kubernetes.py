"""A fake Kubernetes API server for the Experiment resource: no cluster runs here, so this stands in for one. It
speaks the parts of the protocol the rollout's target uses, over real HTTP: bearer-token authentication (a token
``denied`` is authenticated but forbidden, as RBAC would answer), GET of a custom object, and PATCH with
``application/merge-patch+json`` (RFC 7386 semantics, ``metadata.resourceVersion`` as a precondition: 409 when it is
stale), answering errors with a ``Status`` object as the API server does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIX = "/apis/mlops.seldon.io/v1alpha1/namespaces/"
TOKEN = "rollout-token"


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


class FakeKubernetes:
    def __init__(self, objects: dict[tuple[str, str], dict]):
        """``objects``: (namespace, name) -> Experiment."""
        self.objects, self.patches, self.lock = objects, [], threading.Lock()
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

            def _object(self):
                auth = self.headers.get("Authorization", "")
                if auth not in (f"Bearer {TOKEN}", "Bearer denied"):
                    return self._status(401, "Unauthorized", "Unauthorized")
                if auth == "Bearer denied":
                    return self._status(403, "Forbidden", "experiments.mlops.seldon.io is forbidden")
                if not self.path.startswith(PREFIX):
                    return self._status(404, "NotFound", "the server could not find the requested resource")
                namespace, plural, name = self.path[len(PREFIX):].split("?")[0].split("/")[:3]
                key = (namespace, name)
                if plural != "experiments" or key not in fake.objects:
                    return self._status(404, "NotFound", f'experiments.mlops.seldon.io "{name}" not found')
                return key

            def do_GET(self):  # noqa: N802
                key = self._object()
                if key is not None:
                    with fake.lock:
                        self._answer(200, fake.objects[key])

            def do_PATCH(self):  # noqa: N802
                key = self._object()
                if key is None:
                    return
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", "expected application/merge-patch+json")
                patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    current = fake.objects[key]
                    given = (patch.get("metadata") or {}).get("resourceVersion")
                    if given is not None and given != current["metadata"]["resourceVersion"]:
                        return self._status(409, "Conflict", "the object has been modified; please apply your "
                                                             "changes to the latest version and try again")
                    updated = merge_patch(current, patch)
                    updated["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
                    fake.objects[key] = updated
                    fake.patches.append(patch)
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
