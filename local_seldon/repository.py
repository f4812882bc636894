"""The model repository ``market-ab serve`` hands to MLServer: the models folder as it is, with each Model's
``spec.parameters`` written into ``parameters.extra`` of its ``model-settings.json``, and that file cut down to what
Seldon's agent keeps when it rewrites it, so that a model behaves here as it will on the cluster.

The original folder is never written to (on a cluster it is a downloaded artifact): the prepared repository is a
folder of symbolic links, apart from the ``model-settings.json`` files it rewrites.

The outcomes model counts outcomes of the arms it is configured with; unless its Model names them, here they are the
repository's models that predict a direction, so that a model added to the local stack (an experiment's candidate)
needs no setting.
"""

from __future__ import annotations

import json
from pathlib import Path

SETTINGS_FILE = "model-settings.json"
OUTCOMES_RUNTIME = "routers.outcomes.OutcomesRuntime"


def model_folders(models_dir: Path) -> dict[str, Path]:
    """Model name (``name`` in its settings, else the folder's) -> folder."""
    folders = {}
    for settings in sorted(Path(models_dir).glob(f"*/{SETTINGS_FILE}")):
        name = json.loads(settings.read_text()).get("name") or settings.parent.name
        folders[name] = settings.parent
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


def prepare_repository(models_dir: Path, model_parameters: dict[str, dict[str, str]], target: Path) -> Path:
    """Link ``models_dir`` into ``target`` and apply ``model_parameters`` (Model name -> parameters). Raises
    ValueError naming the Models that have no folder."""
    models_dir, target = Path(models_dir).resolve(), Path(target)
    folders = model_folders(models_dir)
    missing = sorted(set(model_parameters) - set(folders))
    if missing:
        raise ValueError(f"{models_dir} has no model folder for {', '.join(missing)} (a folder holding a "
                         f"{SETTINGS_FILE} whose name matches the Model)")
    target.mkdir(parents=True, exist_ok=True)
    all_settings = {name: json.loads((folder / SETTINGS_FILE).read_text()) for name, folder in folders.items()}
    predictors = ",".join(name for name, settings in all_settings.items()
                          if any(t.get("name") == "direction" for t in settings.get("outputs") or []))
    in_folders = {folder.name for folder in folders.values()}
    for entry in models_dir.iterdir():
        if entry.name not in in_folders:
            (target / entry.name).symlink_to(entry)  # settings.json and anything else beside the models
    for name, folder in folders.items():
        copy = target / folder.name
        copy.mkdir()
        for entry in folder.iterdir():
            if entry.name != SETTINGS_FILE:
                (copy / entry.name).symlink_to(entry)
        settings = as_seldon_agent_writes(all_settings[name])
        given = dict(model_parameters.get(name) or {})
        if settings.get("implementation") == OUTCOMES_RUNTIME and not given.get("arms") and predictors:
            given["arms"] = predictors
        if given:
            parameters = settings.setdefault("parameters", {})
            parameters["extra"] = {**(parameters.get("extra") or {}), **given}
        (copy / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return target
