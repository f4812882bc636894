"""A Model applied while ``market-ab serve`` runs (``PUT /admin/models/<name>``), as Seldon loads one applied to a
cluster: its folder is prepared beside the others (``repository.link_model``: the version its ``storageUri`` and
``artifactVersion`` select, renamed to the Model), MLServer loads it through its repository API, and the gateway
routes to it. When the outcomes model counts the repository's predictors by default (its Model names no ``arms``),
a new predictor becomes one of its arms: its settings are rewritten and MLServer reloads it (its counters live in
the process, its outcomes in its store, so neither starts again).

Applying the same spec again changes nothing; another spec for a served name is refused (Seldon would roll the Model
to a new version; here a model once loaded stays as it is).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import aiohttp

from .deployment import Deployment, DeploymentError, model_spec, unimplemented_fields
from .repository import OUTCOMES_RUNTIME, SETTINGS_FILE, link_model, model_folders, versioned_folders

log = logging.getLogger(__name__)
LOAD_TIMEOUT = aiohttp.ClientTimeout(total=300)


class ModelRegistrar:
    def __init__(self, deployment: Deployment, models_dir: Path, repository: Path, mlserver_http: str, served: set):
        """``served``: the gateway's set of model names, which a registration adds to."""
        self.deployment, self.models_dir, self.repository = deployment, Path(models_dir), Path(repository)
        self.mlserver_http, self.served = mlserver_http.rstrip("/"), served
        self.applied: dict[str, dict] = {}  # Model -> the spec it was applied with
        self._lock = asyncio.Lock()  # one registration at a time: each rewrites the outcomes model's settings
        self._failed: set[str] = set()  # names whose folder was prepared but MLServer did not load
        self._half_done: set[str] = set()  # loaded, but the outcomes model did not take it: a retry finishes it

    def folder_of(self, name: str, spec) -> tuple[Path, dict[str, str]]:
        """The folder Model ``name`` with this ``spec`` is served from, and its parameters; DeploymentError."""
        if not isinstance(spec, dict):
            raise DeploymentError(f"expected the Model's spec as a JSON object, got {type(spec).__name__}")
        problems = unimplemented_fields("Model", spec)
        if problems:
            raise DeploymentError("\n".join(problems))
        try:
            parameters, version = model_spec(spec)
            if version is not None:
                return versioned_folders(self.models_dir, {name: version})[name], parameters
        except (KeyError, TypeError, ValueError) as error:
            raise DeploymentError(str(error)) from None
        folders = model_folders(self.models_dir)
        if name not in folders:
            raise DeploymentError(f"no folder for Model {name} in {self.models_dir} (without artifactVersion a Model "
                                  f"is the folder of its name)")
        return folders[name], parameters

    async def apply(self, name: str, spec) -> bool:
        """Serve Model ``name``; False when it was already served with this spec. DeploymentError (a client's
        mistake) or RuntimeError (MLServer could not load it)."""
        async with self._lock:
            return await self._apply(name, spec)

    async def _apply(self, name: str, spec) -> bool:
        if name in self.served:
            if self.applied.get(name) == spec:
                if name in self._half_done:
                    await self._count_outcomes_of(name)
                    self._half_done.discard(name)
                return False
            raise DeploymentError(f"model '{name}' is already served; market-ab serve does not replace a loaded "
                                  "model (apply the new version under a new name)")
        folder, parameters = self.folder_of(name, spec)
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        target = self.repository / name
        if target.exists() or target.is_symlink():
            if target.is_symlink() or not target.is_dir() or name not in self._failed:
                raise DeploymentError(f"'{name}' is taken by {target.name} in the model repository")
            shutil.rmtree(target)  # a registration that failed to load
        link_model(folder, target, settings, parameters, name)
        try:
            await self._load(name)
        except RuntimeError:
            shutil.rmtree(target, ignore_errors=True)
            self._failed.add(name)
            raise
        self.served.add(name)
        self.applied[name] = spec
        if any(t.get("name") == "direction" for t in settings.get("outputs") or []):
            self._half_done.add(name)
            await self._count_outcomes_of(name)
            self._half_done.discard(name)
        log.info("model %s loaded from %s", name, folder)
        return True

    async def _count_outcomes_of(self, name: str) -> None:
        """Make ``name`` an arm of every outcomes model whose arms were not given by its Model."""
        for path in sorted(self.repository.glob(f"*/{SETTINGS_FILE}")):
            settings = json.loads(path.read_text())
            model = settings.get("name") or path.parent.name
            extra = (settings.get("parameters") or {}).get("extra") or {}
            if settings.get("implementation") != OUTCOMES_RUNTIME or \
                    self.deployment.model_parameters.get(model, {}).get("arms"):
                continue
            arms = [a for a in str(extra.get("arms", "")).split(",") if a]
            if name in arms:
                continue
            settings["parameters"]["extra"] = {**extra, "arms": ",".join([*arms, name])}
            path.write_text(json.dumps(settings, indent=2))
            await self._load(model)  # MLServer reloads a loaded model with its new settings
            log.info("outcomes model %s now counts %s", model, name)

    async def _load(self, name: str) -> None:
        url = f"{self.mlserver_http}/v2/repository/models/{name}/load"
        try:
            async with aiohttp.ClientSession(timeout=LOAD_TIMEOUT) as session, session.post(url) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"MLServer could not load {name}: {answer.status} {await answer.text()}")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RuntimeError(f"MLServer could not load {name}: {error!r}") from None
