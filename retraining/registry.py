"""The versions of a model folder: the shipped one at its top, retrained ones in ``versions/<N>/``.

Seldon's agent takes a top-level ``model-settings.json`` whatever a Model's ``artifactVersion`` says, so a retrained
version cannot sit beside it; one level down, a Model with ``storageUri: .../<model>/versions`` and
``artifactVersion: N`` selects it (``seldon_market_ab.local_seldon.repository.version_folder``). A version is written in
a hidden folder and renamed into place, so a folder named by a number is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from seldon_market_ab.local_seldon.repository import VERSIONS_FOLDER

METADATA_FILE = "metadata.json"  # runtimes.artifact.METADATA_FILE, not imported: that module loads torch


def versions(folder: Path) -> dict[int, Path]:
    """Version number -> folder: the top-level one (its ``metadata.json`` version) and every ``versions/<N>/``."""
    folder = Path(folder)
    found = {}
    if (folder / METADATA_FILE).is_file():
        found[int(json.loads((folder / METADATA_FILE).read_text())["version"])] = folder
    for entry in sorted((folder / VERSIONS_FOLDER).glob("*")) if (folder / VERSIONS_FOLDER).is_dir() else []:
        if entry.name.isdigit() and (entry / METADATA_FILE).is_file():
            found[int(entry.name)] = entry
    return found


def register(folder: Path, write: Callable[[Path, int], dict]) -> tuple[int, Path, dict]:
    """A new version of the model in ``folder``: ``write(staging, version)`` fills a staging folder and answers its
    metadata, which is then renamed to ``versions/<version>``. Returns the version, its folder and that metadata."""
    parent = Path(folder) / VERSIONS_FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    version = max(versions(folder), default=0) + 1
    staging = parent / f".{version}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        metadata = write(staging, version)
        _fsync_tree(staging)
        final = parent / str(version)
        os.rename(staging, final)  # fails if the version exists: two registrations never share a number
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version, final, metadata


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
