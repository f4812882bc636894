"""Every generated section of the README and docs/*.md equals its rendering from the code and the stored results
(`market-ab readme`), and lives in exactly one document."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from seldon_market_ab.cli.readme import documents, placement_problems, present, section_text, sections

from ..conftest import MARKET_AB, REPO

README = (REPO / "README.md").read_text()
TEXTS = {path: path.read_text() for path in documents(REPO / "README.md", REPO / "docs")}


def test_every_section_lives_in_exactly_one_document():
    assert placement_problems(TEXTS, sections(REPO / "models", REPO / "docs")) == []


@pytest.mark.parametrize("name", list(sections(REPO / "models", REPO / "docs")))
def test_generated_section_is_current(name):
    path, text = next((path, text) for path, text in TEXTS.items() if present(text, [name]))
    assert section_text(text, name) == sections(REPO / "models", REPO / "docs")[name](), \
        f"{path.name} section '{name}' is stale: run `market-ab readme`"


def test_readme_check_names_a_stale_section_and_readme_repairs_it(tmp_path):
    """A stale section in a docs page (here the data table) is named by `--check` and repaired by `readme`; the
    README and the other pages are left as they were."""
    docs = shutil.copytree(REPO / "docs", tmp_path / "docs")
    readme = Path(shutil.copy(REPO / "README.md", tmp_path / "README.md"))
    page = docs / "data.md"
    original = page.read_text()
    data = section_text(original, "data")
    page.write_text(original.replace(data, data.replace("| `goog` |", "| `googl` |")))
    command = [*MARKET_AB, "--models-dir", str(REPO / "models"), "readme",
               "--readme", str(readme), "--docs-dir", str(docs)]
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert check.returncode == 1 and "section 'data'" in check.stderr and "'evaluation'" not in check.stderr
    assert "data.md" in check.stderr
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path, timeout=300)
    assert page.read_text() == original and readme.read_text() == README


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", list(TEXTS), ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading_that_exist(path):
    """The README and the docs link each other by file and heading; a page moved or a heading renamed shows here."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", TEXTS[path]):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
            broken.append(target)
    assert not broken, f"{path.name}: {broken}"
