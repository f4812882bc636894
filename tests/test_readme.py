"""Every generated section of the README and docs/*.md equals its rendering from the code and the stored results
(`market-ab readme`), and lives in exactly one document."""

import subprocess
import sys

import pytest

from market_ab.readme import documents, placement_problems, present, section_text, sections

from .conftest import REPO

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
    stale = tmp_path / "README.md"
    data = section_text(README, "data")
    stale.write_text(README.replace(data, data.replace("| `goog` |", "| `googl` |")))
    command = [sys.executable, "-m", "market_ab.cli", "--models-dir", str(REPO / "models"), "readme",
               "--readme", str(stale), "--docs-dir", str(REPO / "docs")]
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert check.returncode == 1 and "section 'data'" in check.stderr and "'evaluation'" not in check.stderr
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path, timeout=300)
    assert stale.read_text() == README
