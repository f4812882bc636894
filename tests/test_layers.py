"""The layers: each folder imports only the ones below it, and nothing MLServer loads pulls in a tool."""

import ast
import json
import re
import subprocess
import sys

import pytest

from .conftest import MODELS, REPO

CORE = "seldon_market_ab"
RUNTIMES = ("runtimes", "routers", "detectors")
TOOLS = ("training", "local_seldon", "analysis", "rollouts", "retraining", "loadtest", "market_ab")
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
    "market_ab": {CORE, *RUNTIMES, "training", "local_seldon", "analysis", "rollouts", "retraining",
                  "loadtest"},
}
# The pure bandit math knows nothing of MLServer, stores or metrics.
BANDIT_MAY_IMPORT = {"numpy", "scipy", "dataclasses", "__future__", "routers"}
# Loaded by a runtime, any of these would put a tool or a heavy dependency on the serving path.
NOT_ON_THE_SERVING_PATH = ("matplotlib", "locust", "arch", "backtesting", "sklearn", "gevent", *TOOLS)
# ...except where a runtime needs it: alibi_detect.cd imports scikit-learn at module level.
NEEDED_BY = {"detectors.drift.DriftRuntime": {"sklearn"}}


def imported_packages(path) -> set[str]:
    """Top-level names imported by a module, resolving relative imports within its package."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(REPO).parts[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(package if node.level else node.module.split(".")[0])
    return names


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
        assert "from routers" not in text and "import routers" not in text  # only relative, within bandit/
        assert not re.search(r"from \.\.", text), f"{module} reaches outside routers/bandit"


def implementations() -> list[str]:
    return sorted({json.loads(p.read_text())["implementation"] for p in MODELS.glob("*/model-settings.json")})


@pytest.mark.parametrize("implementation", implementations())
def test_a_runtime_loads_no_tool(implementation):
    """Import the runtime in a fresh interpreter, as MLServer does, and list what came with it."""
    module, _, cls = implementation.rpartition(".")
    script = (f"import sys, {module}; assert hasattr({module}, {cls!r}); "
              "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
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
