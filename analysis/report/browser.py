"""The report's page looked at in headless Chromium, as a person would open it: how many of its plots loaded (the
page says so itself once loaded: ``templates/report.html.j2``), and a screenshot.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def look_at(report_html: Path, screenshot: Path | None = None, browser: str = "chromium") -> dict:
    """Open the report in headless Chromium as a person would: how many of its plots loaded, and a screenshot of the
    page (``screenshot``, default ``report-screenshot.png`` beside it)."""
    report_html = Path(report_html).resolve()
    screenshot = screenshot or report_html.with_name("report-screenshot.png")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", report_html.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={screenshot}", report_html.as_uri()],
                   capture_output=True, timeout=120)
    return {"images_loaded": int(found[1]) if found else 0, "images": int(found[2]) if found else -1,
            "screenshot": str(screenshot) if screenshot.exists() else None}
