"""The local stack's admin port: an Experiment's candidates and weights, read and changed while serving.

``GET /admin/experiments`` lists them; ``GET /admin/experiments/<name>`` answers ``{"name", "generation", "spec"}``;
``PUT /admin/experiments/<name>`` with the Experiment's ``spec`` as JSON checks it like a manifest
(``Deployment.updated_experiment``: 400 with one line per problem, in MLServer's ``{"error": ...}`` shape) and
applies it from the next request on (``Gateway.replace_experiment``); with ``If-Match: <generation>`` only if
nobody changed it since that generation was read (else 409); for a name not deployed it creates the Experiment
(``Deployment.new_experiment``; 201); ``GET /admin/experiments/<name>?after=G&wait=S`` answers once it exists at a
generation above G (a watch, at most S seconds). ``PUT /admin/models/<name>`` with a Model's ``spec`` loads it
(``registration.ModelRegistrar``: 201, or 200 when it was already served so; ``GET /admin/models`` lists them):
together, what a retraining applies to a cluster. It listens on loopback only, apart from the
inference ports, so that nothing that can send a request can also move the traffic: on a cluster the same change is
a patch of the Experiment resource, which Kubernetes' RBAC guards.
"""

from __future__ import annotations

import asyncio
import re

import orjson
from aiohttp import web

from .deployment import DeploymentError
from .gateway import Gateway
from .registration import ModelRegistrar
from .rest import error_response

DEFAULT_ADMIN_PORT = 9002
ADMIN_HOST = "127.0.0.1"


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a Kubernetes object name (DNS-1123)


@web.middleware
async def loopback_only(request: web.Request, handler):
    """Refuse a request whose Host is not a loopback name: a web page that rebinds its own name to 127.0.0.1
    would otherwise reach this port from the user's browser."""
    host = (request.headers.get("Host") or "").lower()
    if host.rsplit(":", 1)[0] not in LOOPBACK_HOSTS and host not in LOOPBACK_HOSTS:
        return error_response(403, f"the admin port answers requests for 127.0.0.1 or localhost only, not {host!r}")
    return await handler(request)


class AdminDoor:
    def __init__(self, gateway: Gateway, registrar: ModelRegistrar | None = None):
        self.gateway, self.registrar = gateway, registrar
        self._changed = asyncio.Condition()  # notified after every applied change, for the watches

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024, middlewares=[loopback_only])
        app.router.add_get("/admin/experiments", self.list_experiments)
        app.router.add_get("/admin/experiments/{name}", self.get_experiment)
        app.router.add_put("/admin/experiments/{name}", self.put_experiment)
        if self.registrar is not None:
            app.router.add_get("/admin/models", self.list_models)
            app.router.add_put("/admin/models/{name}", self.put_model)
        return app

    async def list_models(self, _request: web.Request) -> web.Response:
        applied = self.registrar.applied
        return web.json_response({"models": [{"name": name, **({"spec": applied[name]} if name in applied else {})}
                                             for name in sorted(self.gateway.models)]})

    async def put_model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not NAME.match(name):
            return error_response(400, f"model name {name!r}: expected a Kubernetes object name (lower-case letters, "
                                       "digits, '-' and '.')")
        try:
            created = await self.registrar.apply(name, orjson.loads(await request.read()))
        except orjson.JSONDecodeError as error:
            return error_response(400, f"model '{name}' not applied: expected the Model's spec as JSON: {error}")
        except DeploymentError as error:
            return error_response(400, f"model '{name}' not applied: {error}")
        except RuntimeError as error:  # MLServer's failure, not the client's
            return error_response(502, f"model '{name}' not applied: {error}")
        return web.json_response({"name": name, "spec": self.registrar.applied[name]}, status=201 if created else 200)

    def _view(self, name: str) -> dict:
        return {"name": name, "generation": self.gateway.generations[name],
                "spec": self.gateway.deployment.experiments[name].spec()}

    async def list_experiments(self, _request: web.Request) -> web.Response:
        return web.json_response({"experiments": [self._view(n) for n in sorted(self.gateway.deployment.experiments)]})

    async def get_experiment(self, request: web.Request) -> web.Response:
        """With ``?after=G&wait=S``, once the experiment exists at a generation above G, or after S seconds (a
        watch: what a retraining applied, and its rollout's first change, without polling)."""
        name = request.match_info["name"]
        if "after" in request.query:
            try:
                after, wait = int(request.query["after"]), min(float(request.query.get("wait", 0)), 300.0)
            except ValueError:
                return error_response(400, "expected integer 'after' (a generation) and seconds 'wait' (at most 300)")
            await self._watch(lambda: self.gateway.generations.get(name, 0) > after, wait)
        if name not in self.gateway.deployment.experiments:
            return self._unknown(name)
        return web.json_response(self._view(name))

    async def _watch(self, done, wait: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), wait)
            except TimeoutError:
                pass

    async def _applied(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def put_experiment(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()  # before the check: from the check to the change, nothing may interleave
        if name not in self.gateway.deployment.experiments:
            return await self._create(name, body)
        expected = request.headers.get("If-Match")
        if expected is not None and expected.strip('"') != str(self.gateway.generations[name]):
            return error_response(409, f"experiment '{name}' changed meanwhile: generation "
                                       f"{self.gateway.generations[name]}, not {expected}; read it again")
        try:
            spec = orjson.loads(body)
            experiment = self.gateway.deployment.updated_experiment(name, spec, self.gateway.models)
        except orjson.JSONDecodeError as error:
            return self._rejected(name, f"expected the Experiment's spec as JSON: {error}")
        except DeploymentError as error:
            return self._rejected(name, str(error))
        self.gateway.replace_experiment(experiment)
        await self._applied()
        return web.json_response(self._view(name))

    async def _create(self, name: str, body: bytes) -> web.Response:
        if not NAME.match(name):
            return error_response(400, f"experiment name {name!r}: expected a Kubernetes object name")
        try:
            experiment = self.gateway.deployment.new_experiment(name, orjson.loads(body), self.gateway.models)
        except orjson.JSONDecodeError as error:
            return error_response(400, f"experiment '{name}' not created: expected its spec as JSON: {error}")
        except DeploymentError as error:
            return error_response(400, f"experiment '{name}' not created: {error}")
        self.gateway.add_experiment(experiment)
        await self._applied()
        return web.json_response(self._view(name), status=201)

    def _rejected(self, name: str, message: str) -> web.Response:
        self.gateway.experiment_updates.labels(name, "rejected").inc()
        return error_response(400, f"experiment '{name}' not changed: {message}")

    def _unknown(self, name: str) -> web.Response:
        known = ", ".join(sorted(self.gateway.deployment.experiments)) or "none"
        return error_response(404, f"no experiment '{name}'; these manifests define {known}")
