"""The retraining trigger on a cluster: the alert receiver (``market-ab alerts receive --retrain-job FILE``) turns each
new retraining request into a Kubernetes Job (``manifests/retraining/job.yaml``); the local stack's counterpart is
``seldon_market_ab.local_seldon.alert_receiver.CommandTrigger``."""

from __future__ import annotations

import logging
import threading

from seldon_market_ab import metrics

logger = logging.getLogger(__name__)


class JobTrigger:
    """A retraining request's trigger on a cluster (``market-ab alerts receive --retrain-job FILE``): a Job from
    ``job_template`` (``manifests/retraining/job.yaml``), named by the request, ``market-ab-retrain-`` and the first 10
    hex digits of the sha256 of its key, with ``--alert KEY`` appended to its container's args.

    The Jobs are the record: a name taken (409 AlreadyExists) is this alert's Job, created before, and nothing new
    starts; a Job labelled ``app.kubernetes.io/name=market-ab-retrain`` that has not finished means a retraining runs,
    and the request starts nothing (one at a time, as the local ledger's lock has it; the retraining's own lock also
    guards this when the Jobs share its state volume). Each outcome is a log line and
    ``market_ab_retrain_jobs_total{outcome}``: created, exists, skipped, failed. The ServiceAccount needs create, get
    and list on jobs.batch in ``namespace`` (``manifests/retraining/role.yaml``)."""

    LABEL, NAME = "app.kubernetes.io/name", "market-ab-retrain"
    REQUEST_TIMEOUT = (5, 15)  # connect, read: a half-open connection must not hold a request's thread

    def __init__(self, job_template: dict, namespace: str | None = None, api=None):
        """``api``: a ``kubernetes.client.BatchV1Api`` (default: one from in-cluster credentials, else the
        kubeconfig). ValueError when the template is not a Job with a container."""
        from seldon_market_ab.rollouts.kubernetes_target import _custom_objects_api, default_namespace

        self.template = job_template
        self.job_for("a request")  # a template it cannot use is refused at start, not at the first alert
        self.namespace = namespace or default_namespace()
        if api is None:
            from kubernetes import client

            api = client.BatchV1Api(_custom_objects_api().api_client)
        self.api = api
        self._lock = threading.Lock()  # from the list to the create: two requests at once start one Job
        self._outcomes = metrics.counter("retrain_jobs_total", "Retraining requests on a cluster, by what they did "
                                         "(created a Job; exists: the alert has one; skipped: one runs; failed)",
                                         ["outcome"])

    @classmethod
    def job_name(cls, key: str) -> str:
        import hashlib

        return f"{cls.NAME}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def job_for(self, key: str) -> dict:
        """The Job for the request ``key``."""
        import copy

        job = copy.deepcopy(self.template)
        try:
            if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
                raise ValueError(f"expected a batch/v1 Job, got {job.get('apiVersion')} {job.get('kind')}")
            containers = job["spec"]["template"]["spec"]["containers"]
            container = next((c for c in containers if c.get("name") == "retrain"), containers[0])
        except (AttributeError, KeyError, IndexError, TypeError):
            raise ValueError("the retraining Job template needs spec.template.spec.containers") from None
        metadata = job.setdefault("metadata", {})
        metadata.pop("generateName", None)
        metadata.pop("namespace", None)
        metadata["name"] = self.job_name(key)
        metadata["labels"] = {**(metadata.get("labels") or {}), self.LABEL: self.NAME}  # what one-at-a-time lists
        metadata["annotations"] = {**(metadata.get("annotations") or {}), "market-ab.io/alert": key}
        container["args"] = [*(container.get("args") or []), "--alert", key]
        return job

    def __call__(self, request: dict) -> str:
        key = request["key"]
        name = self.job_name(key)
        outcome = "failed"
        try:
            with self._lock:
                jobs = self.api.list_namespaced_job(self.namespace, label_selector=f"{self.LABEL}={self.NAME}",
                                                    _request_timeout=self.REQUEST_TIMEOUT).items
                mine = next((job for job in jobs if job.metadata.name == name), None)
                running = [job.metadata.name for job in jobs if not self._finished(job)]
                if mine is not None:
                    outcome = "exists"
                    logger.warning("retraining for %s: Job %s exists already (%s); nothing new starts", key, name,
                                self._state(mine))
                elif running:
                    outcome = "skipped"
                    logger.warning("retraining for %s starts nothing: Job %s runs (one retraining at a time)", key,
                                   ", ".join(running))
                else:
                    outcome = self._create(key, name)
        except Exception as error:  # noqa: BLE001 - the request stays recorded; the line says why nothing started
            logger.error("retraining for %s: no Job created: %s", key, self._reason(error))
        self._outcomes.labels(outcome).inc()
        return outcome

    def _create(self, key: str, name: str) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_job(self.namespace, self.job_for(key), _request_timeout=self.REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status != 409:
                raise
            existing = self.api.read_namespaced_job(name, self.namespace, _request_timeout=self.REQUEST_TIMEOUT)
            logger.warning("retraining for %s: Job %s exists already (%s); nothing new starts", key, name,
                        self._state(existing))
            return "exists"
        logger.warning("retraining for %s: Job %s created in namespace %s", key, name, self.namespace)
        return "created"

    def _reason(self, error: Exception) -> str:
        status = getattr(error, "status", None)
        if status == 403:
            return (f"403 forbidden: the receiver's ServiceAccount needs create, get and list on jobs.batch in "
                    f"namespace {self.namespace} (manifests/retraining/role.yaml)")
        if status == 401:
            return "401 not authenticated (credentials?)"
        return f"{status} {error.reason}" if status is not None else repr(error)

    @staticmethod
    def _finished(job) -> bool:
        conditions = (job.status and job.status.conditions) or []
        return any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions)

    @classmethod
    def _state(cls, job) -> str:
        conditions = (job.status and job.status.conditions) or []
        ended = [c.type.lower() for c in conditions if c.type in ("Complete", "Failed") and c.status == "True"]
        return ended[0] if ended else "running"
