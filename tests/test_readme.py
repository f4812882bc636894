"""Every generated README section equals its rendering from the code and the stored results (`market-ab readme`)."""

import subprocess
import sys

import pytest

from market_ab.readme import section_text, sections

from .conftest import REPO

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("name", list(sections(REPO / "models", REPO / "docs")))
def test_generated_section_is_current(name):
    assert section_text(README, name) == sections(REPO / "models", REPO / "docs")[name](), \
        f"README section '{name}' is stale: run `market-ab readme`"


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
