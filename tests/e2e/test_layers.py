"""The layers: each folder imports only the ones below it, and nothing MLServer loads pulls in a tool."""

import ast
import json
import re
import subprocess
import sys

import pytest

from ..conftest import MODELS, REPO

CORE = "seldon_market_ab"
RUNTIMES = ("runtimes", "routers", "detectors")
TOOLS = ("training", "local_seldon", "analysis", "rollouts", "retraining", "loadtest", "cli")
# What each of our packages may import of ours (besides itself): only downward, never a circle.
ALLOWED = {
    CORE: set(),
    "runtimes": {CORE},
    "routers": {CORE},
    "detectors": {CORE},
    "training": {CORE, "runtimes", "detectors"},
    "local_seldon": {CORE},
    "analysis": {CORE, "runtimes", "routers", "detectors", "training"},
    "rollouts": {CORE, "training", "local_seldon", "analysis"},
    "retraining": {CORE, "runtimes", "training", "local_seldon", "rollouts"},
    "loadtest": {CORE, "runtimes", "routers", "detectors", "training", "local_seldon", "analysis"},
    "cli": {CORE, *RUNTIMES, "training", "local_seldon", "analysis", "rollouts", "retraining",
                  "loadtest"},
}
# The pure bandit math knows nothing of MLServer, stores or metrics.
BANDIT_MAY_IMPORT = {"numpy", "scipy", "dataclasses", "__future__", "routers"}
# Loaded by a runtime, any of these would put a tool or a heavy dependency on the serving path.
NOT_ON_THE_SERVING_PATH = ("matplotlib", "locust", "arch", "backtesting", "sklearn", "gevent", *TOOLS)
# ...except where a runtime needs it: alibi_detect.cd imports scikit-learn at module level.
NEEDED_BY = {"seldon_market_ab.detectors.drift.DriftRuntime": {"sklearn"}}


def layer_of(module: str) -> str:
    """The layer an absolute import name belongs to: a folder for ``seldon_market_ab.<folder>...``, the core for the
    rest of ``seldon_market_ab``, or the top-level name of a third-party module."""
    top, _, rest = module.partition(".")
    if top != CORE:
        return top
    folder = rest.split(".")[0]
    return folder if folder in ALLOWED else CORE


def absolute_imports(path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module)
    return names


def imported_packages(path) -> set[str]:
    """The layers a module imports, resolving relative imports within its package."""
    package = path.relative_to(REPO).parts[0]
    relative = any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(ast.parse(path.read_text())))
    return {layer_of(name) for name in absolute_imports(path)} | ({package} if relative else set())


def our_modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


def test_every_package_is_in_the_layer_table():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("package", list(ALLOWED))
def test_imports_go_only_downward(package):
    ours = set(ALLOWED)
    for module in our_modules(package):
        forbidden = (imported_packages(module) & ours) - ALLOWED[package] - {package}
        assert not forbidden, f"{module.relative_to(REPO)} imports {sorted(forbidden)}"


def test_our_modules_are_imported_by_their_installed_names():
    """A folder is installed as ``seldon_market_ab.<folder>``: ``import routers`` works only from a source tree."""
    for module in [*REPO.glob("*/**/*.py")]:
        if module.relative_to(REPO).parts[0] in (*ALLOWED, "tests"):
            bare = [name for name in absolute_imports(module) if name.split(".")[0] in set(ALLOWED) - {CORE}]
            assert not bare, f"{module.relative_to(REPO)} imports {bare}"


def test_the_layer_table_has_no_circle():
    order = []
    remaining = dict(ALLOWED)
    while remaining:
        ready = [p for p, needs in remaining.items() if needs <= set(order)]
        assert ready, f"circle among {sorted(remaining)}"
        order += ready
        for p in ready:
            del remaining[p]


def test_bandit_math_is_pure():
    for module in our_modules("routers/bandit"):
        extra = imported_packages(module) - BANDIT_MAY_IMPORT
        assert not extra, f"{module.relative_to(REPO)} imports {sorted(extra)}"
        text = module.read_text()
        assert "routers" not in " ".join(absolute_imports(module))  # only relative, within bandit/
        assert not re.search(r"from \.\.", text), f"{module} reaches outside routers/bandit"


def implementations() -> list[str]:
    return sorted({json.loads(p.read_text())["implementation"] for p in MODELS.glob("*/model-settings.json")})


@pytest.mark.parametrize("implementation", implementations())
def test_a_runtime_loads_no_tool(implementation):
    """Import the runtime in a fresh interpreter, as MLServer does, and list what came with it."""
    module, _, cls = implementation.rpartition(".")
    script = (f"import sys, {module}; assert hasattr({module}, {cls!r}); "
              "print(' '.join(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    # top-level names (matplotlib) and our subpackages (seldon_market_ab.training)
    loaded = {".".join(name.split(".")[:depth]) for name in result.stdout.split() for depth in (1, 2)}
    assert CORE in loaded
    unwanted = loaded & set(NOT_ON_THE_SERVING_PATH) - NEEDED_BY.get(implementation, set())
    assert not unwanted, sorted(unwanted)


def test_readme_layout_lists_every_package():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    section = section.split("\n## ", 1)[0]  # up to the next section, if any
    listed = set(re.findall(r"^\| `([a-z_]+)/`", section, flags=re.MULTILINE))
    folders = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert listed == {f for f in folders if not f.endswith(".egg-info")} - {"build", "dist", "reports"}
