"""Open the HTML report in a real headless Chromium: charts render, no console error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.warehouse.html_report import write_html_report
from pipelines.warehouse.runner import build_models

CHROMIUM = Path("/usr/bin/chromium")
PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


def test_report_renders_in_chromium(fresh_db: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    build_models(fresh_db)
    page_path = write_html_report(fresh_db, tmp_path / "report.html")
    screenshot = tmp_path / "report.png"
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        # a fresh profile directory per run (playwright passes it as --user-data-dir)
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            viewport={"width": 1280, "height": 900},
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            # every chart drew something
            for section in ("daily", "funnel", "latency", "errors", "numbers"):
                shapes = page.locator(f"#{section} svg rect").count()
                assert shapes > 0, f"the {section} chart drew nothing"
                box = page.locator(f"#{section} svg").first.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 20
            assert page.locator("#campaigns tbody tr").count() == 2
            # the script works: sorting by messages, descending on the second click
            header = page.locator("#campaigns th[data-col='3']")
            header.click()
            header.click()
            first = page.locator("#campaigns tbody tr").first.locator("td").nth(1)
            assert first.inner_text() == "Spring rally"
            # switching the funnel to the other campaign shows its panel
            page.select_option("#funnel-select", "11")
            assert page.locator(".funnel[data-campaign='11']").is_visible()
            assert not page.locator(".funnel[data-campaign='10']").is_visible()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert all(url.startswith("file://") for url in requests), requests
    assert screenshot.stat().st_size > 10_000
    out = PROJECT_ROOT / "out"
    out.mkdir(exist_ok=True)
    shutil.copyfile(screenshot, out / "report-screenshot.png")
