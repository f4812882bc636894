"""The doctests of every module that has them, imported by its installed name (``seldon_market_ab.routers.bandit.
policies``, not the folder's ``routers.bandit.policies``), so each module is loaded once, as users load it."""

import doctest
import importlib
from pathlib import Path

import pytest

import seldon_market_ab

from ..conftest import REPO


def _folders() -> dict[str, str]:
    """Import name of each folder setup.cfg maps (``seldon_market_ab.routers`` -> ``routers``)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return {name.strip(): folder.strip() for name, folder in
            (line.split("=") for line in config["options"]["package_dir"].strip().splitlines())}


def modules_with_examples() -> list[str]:
    names = []
    for package, folder in _folders().items():
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO / folder).with_suffix("")
            if package == seldon_market_ab.__name__ and relative.parts[0] in {f for f in _folders().values()}:
                continue
            if ">>> " in path.read_text():
                parts = [p for p in relative.parts if p != "__init__"]
                names.append(".".join([package, *parts]))
    return names


MODULES = modules_with_examples()


def test_the_doctests_are_found():
    assert len(MODULES) >= 20, MODULES


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
    loaded = importlib.import_module(module)
    assert Path(loaded.__file__).is_relative_to(REPO)  # the working tree's module, through the editable install
    result = doctest.testmod(loaded, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{module}: {result.failed} of {result.attempted} examples failed (output above)"
