"""The model repository ``market-ab serve`` hands to MLServer: the models folder as it is, with each Model's
``spec.parameters`` written into ``parameters.extra`` of its ``model-settings.json``, and that file cut down to what
Seldon's agent keeps when it rewrites it, so that a model behaves here as it will on the cluster.

The original folder is never written to (on a cluster it is a downloaded artifact): the prepared repository is a
folder of symbolic links, apart from the ``model-settings.json`` files it rewrites.

Versions: a Model with ``spec.artifactVersion`` is served from the version folder Seldon's agent would pick in its
``storageUri`` (``version_folder``), located here under the models folder by the part of the URI after its last
``/models/``: ``gs://bucket/models/enhanced/versions`` with ``artifactVersion: 2`` is ``models/enhanced/versions/2/``.
Retrained versions live under ``versions/``, not beside the shipped ``model-settings.json``: the agent takes a
top-level one whatever ``artifactVersion`` says. A Model without ``artifactVersion`` is the folder of its name.

The outcomes model counts outcomes of the arms it is configured with; unless its Model names them, here they are the
repository's models that predict a direction, so that a model added to the local stack (an experiment's candidate)
needs no setting.
"""

from __future__ import annotations

import json
from pathlib import Path

SETTINGS_FILE = "model-settings.json"
OUTCOMES_RUNTIME = "seldon_market_ab.routers.outcomes.OutcomesRuntime"
VERSIONS_FOLDER = "versions"  # <model>/versions/<N>/: the versions a retraining registered
STORAGE_PREFIX = "/models/"  # a storageUri's path below it is the folder under the local models folder


def model_folders(models_dir: Path) -> dict[str, Path]:
    """Model name (``name`` in its settings, else the folder's) -> folder."""
    folders = {}
    for settings in sorted(Path(models_dir).glob(f"*/{SETTINGS_FILE}")):
        name = json.loads(settings.read_text()).get("name") or settings.parent.name
        folders[name] = settings.parent
    return folders


def version_folder(folder: Path, version: int | None) -> Path | None:
    """The folder Seldon's agent serves a Model from, given its artifact ``folder`` and ``artifactVersion``, in its
    order (scheduler/pkg/agent/repository/mlserver/mlserver.go, FindModelVersionFolder): a ``model-settings.json`` at
    the top, whatever the version; else the folder named by the version, at any depth; else, with no version, the
    highest-numbered one. None when there is none; ValueError when the version names several folders."""
    folder = Path(folder)
    if (folder / SETTINGS_FILE).is_file():
        return folder
    found = [p.parent for p in sorted(folder.rglob(SETTINGS_FILE)) if p.parent != folder]
    if version is not None:
        named = [f for f in found if f.name == str(version)]
        if len(named) > 1:
            raise ValueError(f"{folder} has several folders for version {version}: {', '.join(map(str, named))}")
        return named[0] if named else None
    numbered = [f for f in found if f.name.isdigit()]
    return max(numbered, key=lambda f: int(f.name)) if numbered else None


def storage_folder(models_dir: Path, storage_uri: str) -> Path:
    """Where a Model's ``storageUri`` is under the local models folder: the path after its last ``/models/``.

    >>> storage_folder(Path("models"), "gs://seldon-market-ab/models/enhanced/versions")
    PosixPath('models/enhanced/versions')
    """
    if STORAGE_PREFIX not in storage_uri:
        raise ValueError(f"storageUri {storage_uri!r}: market-ab serve finds a versioned Model's artifact under its "
                         f"models folder by the path after '{STORAGE_PREFIX}', which this URI has not")
    relative = storage_uri.rsplit(STORAGE_PREFIX, 1)[1].strip("/")
    if not relative or ".." in Path(relative).parts:
        raise ValueError(f"storageUri {storage_uri!r}: expected a folder below '{STORAGE_PREFIX}'")
    return Path(models_dir) / relative


def versioned_folders(models_dir: Path, versions: dict[str, tuple[str, int]]) -> dict[str, Path]:
    """Model name -> the version folder its ``(storageUri, artifactVersion)`` selects; ValueError naming the
    Models whose version is not there."""
    folders, problems = {}, []
    for name, (storage_uri, version) in sorted(versions.items()):
        try:
            folder = version_folder(storage_folder(models_dir, storage_uri), version)
        except ValueError as error:
            problems.append(f"Model {name}: {error}")
            continue
        if folder is None:
            problems.append(f"Model {name}: no version {version} under {storage_folder(models_dir, storage_uri)} "
                            f"(a folder named {version} holding a {SETTINGS_FILE})")
        else:
            folders[name] = folder
    if problems:
        raise ValueError("\n".join(problems))
    return folders


# What Seldon 2.10's agent keeps of model-settings.json: the fields of its Go structs (scheduler/pkg/agent/repository/
# mlserver/mlserver.go: ModelSettings, ModelParameters, ModelMetadataTensors); it reads the file into them and writes
# them back, so every other key is lost.
AGENT_KEEPS = ("name", "inputs", "outputs", "platform", "versions", "parallel_workers", "implementation", "parameters")
AGENT_KEEPS_PARAMETERS = ("uri", "version", "format", "content_type", "extra", "environment_tarball")
AGENT_KEEPS_TENSOR = ("name", "shape", "datatype")


def as_seldon_agent_writes(settings: dict) -> dict:
    """``model-settings.json`` as Seldon's agent leaves it: no adaptive batching fields, no tensor parameters (read
    tuning from ``parameters.extra`` instead; a runtime serves its own metadata).

    >>> as_seldon_agent_writes({"name": "m", "max_batch_size": 8, "parameters": {"uri": "./", "environment_path": "x"},
    ...                         "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "parameters":
    ...                                     {"content_type": "np"}}]})
    {'name': 'm', 'parameters': {'uri': './'}, 'inputs': [{'name': 'x', 'datatype': 'FP32', 'shape': [-1]}]}
    """
    kept = {k: v for k, v in settings.items() if k in AGENT_KEEPS}
    if isinstance(kept.get("parameters"), dict):
        kept["parameters"] = {k: v for k, v in kept["parameters"].items() if k in AGENT_KEEPS_PARAMETERS}
    for key in ("inputs", "outputs"):
        if isinstance(kept.get(key), list):
            kept[key] = [{k: v for k, v in t.items() if k in AGENT_KEEPS_TENSOR} for t in kept[key]]
    return kept


def prepare_repository(models_dir: Path, model_parameters: dict[str, dict[str, str]], target: Path,
                       versions: dict[str, tuple[str, int]] | None = None) -> Path:
    """Link ``models_dir`` into ``target`` and apply ``model_parameters`` (Model name -> parameters); ``versions``
    (Model name -> ``(storageUri, artifactVersion)``) adds the Models served from a version folder. Raises
    ValueError naming the Models that have no folder."""
    models_dir, target = Path(models_dir).resolve(), Path(target)
    versioned = versioned_folders(models_dir, versions or {})
    folders = {**model_folders(models_dir), **versioned}
    missing = sorted(set(model_parameters) - set(folders))
    if missing:
        raise ValueError(f"{models_dir} has no model folder for {', '.join(missing)} (a folder holding a "
                         f"{SETTINGS_FILE} whose name matches the Model)")
    target.mkdir(parents=True, exist_ok=True)
    all_settings = {name: json.loads((folder / SETTINGS_FILE).read_text()) for name, folder in folders.items()}
    predictors = ",".join(name for name, settings in all_settings.items()
                          if any(t.get("name") == "direction" for t in settings.get("outputs") or []))
    in_folders = {folder.name for name, folder in folders.items() if name not in versioned}
    for entry in models_dir.iterdir():
        if entry.name not in in_folders:
            (target / entry.name).symlink_to(entry)  # settings.json and anything else beside the models
    for name, folder in folders.items():
        given = dict(model_parameters.get(name) or {})
        if all_settings[name].get("implementation") == OUTCOMES_RUNTIME and not given.get("arms") and predictors:
            given["arms"] = predictors
        link_model(folder, target / (name if name in versioned else folder.name), all_settings[name], given,
                   name if name in versioned else None)
    return target


def link_model(folder: Path, copy: Path, settings: dict, parameters: dict[str, str], name: str | None = None) -> None:
    """``copy``: ``folder``'s files linked, its settings as the agent writes them with ``parameters`` in
    ``parameters.extra``, and named ``name`` (the Model's, as the agent renames a version it loads). Version folders
    below ``folder`` are left out: MLServer would load each as a version of the model."""
    copy.mkdir()
    for entry in folder.iterdir():
        if entry.name != SETTINGS_FILE and not (entry.is_dir() and any(entry.rglob(SETTINGS_FILE))):
            (copy / entry.name).symlink_to(entry)
    settings = as_seldon_agent_writes(settings)
    if name is not None:
        settings["name"] = name
    if parameters:
        extra = settings.setdefault("parameters", {})
        extra["extra"] = {**(extra.get("extra") or {}), **parameters}
    (copy / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
