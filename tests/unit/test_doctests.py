"""The doctests of every module that has them, imported by its installed name (``seldon_market_ab.routers.bandit.
policies``, not the folder's ``routers.bandit.policies``), so each module is loaded once, as users load it."""

import doctest
import importlib
from pathlib import Path

import pytest

from ..conftest import PACKAGE_DIR, REPO


def modules_with_examples() -> list[str]:
    names = []
    for package, folder in PACKAGE_DIR.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO / folder).with_suffix("")
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
