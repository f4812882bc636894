"""Where a rollout moves the weights on a cluster: the ``Experiment`` resource (``mlops.seldon.io/v1alpha1``), patched
through the official ``kubernetes`` client (``pip install 'seldon-market-ab[kubernetes]'``), with in-cluster
credentials or a kubeconfig.

A change is a JSON merge patch (RFC 7386: the whole ``spec.candidates`` list, other fields untouched) that carries the
``resourceVersion`` it was read at, so that the API server refuses it (409) when somebody changed the Experiment
meanwhile; the target then reads it again. The ServiceAccount needs only ``get`` and ``patch`` on ``experiments`` in
its namespace (``manifests/rollouts/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .targets import KEEP, Conflict, TargetError, with_weights

GROUP, VERSION, PLURAL = "mlops.seldon.io", "v1alpha1", "experiments"
REQUEST_TIMEOUT = (5, 15)  # connect, read: a half-open connection must not hold the loop
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace() -> str:
    """The kubeconfig's current context's when $KUBECONFIG is set, else the pod's own in a cluster, else the
    kubeconfig's, else ``default``."""
    if IN_CLUSTER_NAMESPACE.exists() and not os.environ.get("KUBECONFIG"):
        return IN_CLUSTER_NAMESPACE.read_text().strip()
    try:
        from kubernetes import config

        _, context = config.list_kube_config_contexts()
        return context["context"].get("namespace") or "default"
    except Exception:  # noqa: BLE001 - no kubeconfig: the default namespace
        return "default"


class KubernetesExperiment:
    def __init__(self, experiment: str, namespace: str | None = None, api=None):
        """``api``: a ``kubernetes.client.CustomObjectsApi`` (default: one from in-cluster credentials, else the
        kubeconfig)."""
        self.experiment, self.namespace = experiment, namespace or default_namespace()
        self.api = api or _custom_objects_api()

    def __str__(self) -> str:
        return f"Experiment {self.namespace}/{self.experiment}"

    def spec(self) -> dict:
        return self._get()["spec"]

    def set_weights(self, weights: dict[str, int], mirror=KEEP) -> dict:
        """Read the Experiment, then patch its candidates (and its mirror: null removes it) at the resourceVersion
        read (read again on a conflict)."""
        for attempt in range(3):
            current = self._get()
            spec = {"candidates": with_weights(current["spec"], weights)["candidates"]}
            if mirror is not KEEP:
                spec["mirror"] = mirror
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": spec}
            try:
                return self._call("patch", body=patch)["spec"]
            except Conflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _get(self) -> dict:
        return self._call("get")

    def _call(self, verb: str, **body) -> dict:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as ConnectionTrouble

        method = getattr(self.api, f"{verb}_namespaced_custom_object")
        try:
            return method(GROUP, VERSION, self.namespace, PLURAL, self.experiment, **body,
                          _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            reason = {401: "not authenticated (credentials?)",
                      403: f"forbidden: the ServiceAccount needs get and patch on {PLURAL}.{GROUP} in namespace "
                           f"{self.namespace} (manifests/rollouts/role.yaml)",
                      404: f"no Experiment {self.experiment} in namespace {self.namespace}",
                      409: "changed meanwhile"}.get(error.status, error.reason)
            raise (Conflict if error.status == 409 else TargetError)(
                f"{verb} {self}: {error.status} {reason}") from None
        except (OSError, ConnectionTrouble) as error:
            raise TargetError(f"{verb} {self}: {error}") from None


def _custom_objects_api():
    try:
        from kubernetes import client, config
    except ImportError:
        raise TargetError("--kubernetes needs the kubernetes client: pip install 'seldon-market-ab[kubernetes]'") \
            from None
    try:
        if os.environ.get("KUBECONFIG"):  # said explicitly: it wins over the pod's own ServiceAccount
            config.load_kube_config(os.environ["KUBECONFIG"])
        else:
            config.load_incluster_config()
    except (config.ConfigException, OSError):
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as error:
            raise TargetError(f"no Kubernetes credentials: not in a cluster, and no kubeconfig ({error})") from None
    return client.CustomObjectsApi()
