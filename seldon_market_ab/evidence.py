"""Where the evidence scripts (``loadtest/``, ``analysis/``) leave what they measured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def write_evidence(out: Path, stem: str, results: dict, render: Callable[[dict], str]) -> str:
    """Write ``out/<stem>.json`` and its rendering ``out/<stem>.md`` (what the docs show, checked by
    tests/e2e/test_readme.py), print the rendering and return it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    markdown = render(results)
    (out / f"{stem}.md").write_text(markdown + "\n")
    print(markdown)
    return markdown
