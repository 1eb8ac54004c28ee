"""The compare reports' HTML pages in a real browser: Debian's chromium, headless, driven by
playwright with the system browser (playwright's own browser downloads are never used).

Both pages (the run comparison and the study report) are written from synthetic run folders,
opened from file://, and must load with every <img> decoded at the size of the PNG it embeds,
their tables present, and no console error, page error or failed request. The first use on a
machine installs the `chromium` package as root (launcher/services/packages.py), as the dev
services install theirs.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from launcher.services import packages
from tools.compare import compare
from tools.compare.synthetic_study import KNN, MIOU, write_study

CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium package
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: chromium's own sandbox refuses to start as root
    "--disable-dev-shm-usage",  # containers often give /dev/shm 64 MB; use /tmp instead
    "--disable-gpu",
]
LOAD_TIMEOUT_MS = 30_000


@dataclasses.dataclass
class PageCheck:
    """What the browser saw of one page."""

    title: str
    images: list[dict]
    tables: int
    headings: list[str]
    console_errors: list[str]
    page_errors: list[str]
    failed_requests: list[str]


@pytest.fixture(scope="module")
def browser():
    packages.ensure_installed({"headless browser": "chromium"})
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


def open_page(browser: Browser, path: Path) -> PageCheck:
    page = browser.new_page()
    console_errors: list[str] = []
    page_errors: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("requestfailed", lambda request: failed.append(request.url[:80]))
    page.goto(path.as_uri(), wait_until="load", timeout=LOAD_TIMEOUT_MS)
    images = page.eval_on_selector_all(
        "img",
        "all => all.map(i => ({alt: i.alt, complete: i.complete, "
        "width: i.naturalWidth, height: i.naturalHeight}))",
    )
    check = PageCheck(
        title=page.title(),
        images=images,
        tables=page.locator("table").count(),
        headings=page.locator("h2").all_inner_texts(),
        console_errors=console_errors,
        page_errors=page_errors,
        failed_requests=failed,
    )
    page.close()
    return check


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, which follows the 8-byte signature."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def assert_renders(check: PageCheck, out: Path) -> None:
    """Every PNG of the report is on the page and decoded at its own size; nothing failed."""
    assert not check.console_errors, check.console_errors
    assert not check.page_errors, check.page_errors
    assert not check.failed_requests, check.failed_requests
    expected = {png.name: png_size(png) for png in out.glob("*.png")}
    assert expected, f"the report wrote no PNG into {out}"
    shown = {image["alt"]: (image["width"], image["height"]) for image in check.images}
    assert all(image["complete"] for image in check.images), check.images
    assert shown == expected


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    variants = {
        "base": (1.0, {KNN: 0.50, MIOU: 0.30}),
        "base_encoder_per_mod_proj": (0.95, {KNN: 0.55, MIOU: 0.30}),
        "base_decoder_per_mod_proj": (1.0, {KNN: 0.50, MIOU: 0.30}),
    }
    return write_study(tmp_path_factory.mktemp("runs"), variants)


def test_the_run_comparison_page_shows_every_plot_and_table_without_errors(
    browser: Browser, study: Path, tmp_path: Path
) -> None:
    project = study.parents[2]  # a folder of run folders; _studies/ holds no run
    out = tmp_path / "compare"
    assert compare.main(["--runs", str(project), "--baseline", "base_s0", "--out", str(out)]) == 0
    check = open_page(browser, out / "report.html")
    assert_renders(check, out)
    assert len(check.images) >= 3  # loss curves, downstream, convergence at least
    assert check.tables >= 4  # runs, downstream, convergence, efficiency
    assert "Downstream task performance" in check.headings


def test_the_study_page_shows_every_plot_and_table_without_errors(
    browser: Browser, study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    assert compare.main(["--study", str(study), "--out", str(out)]) == 0
    check = open_page(browser, out / "report.html")
    assert_renders(check, out)
    assert sorted(image["alt"] for image in check.images) == [
        "deltas.png",
        "intervals.png",
        "loss_bands.png",
    ]
    assert check.tables == 4  # study facts, runs, per variant, against the baseline
    assert check.headings == [
        "Study per_modality_projection",
        "Per variant",
        "Against base",
    ]
    assert check.title.startswith("Study per_modality_projection")


def test_a_broken_image_and_a_script_error_are_caught(browser: Browser, tmp_path: Path) -> None:
    """The checks above can fail: a PNG that does not decode and a throwing script."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>broken</title></head><body>"
        "<img alt='bad.png' src='data:image/png;base64,iVBORw0KGgoAAAA='>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    check = open_page(browser, page)
    assert check.images == [{"alt": "bad.png", "complete": True, "width": 0, "height": 0}]
    assert "boom" in check.console_errors
    assert any("undefinedFunction" in error for error in check.page_errors)
