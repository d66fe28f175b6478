"""Render report.html in headless Chromium: a screenshot with content and a DOM that loaded.

Skipped (with the reason) where no Chromium binary is installed, except under CI (the ``CI``
environment variable, which ``.ci/run`` sets after installing the Debian ``chromium``
package): there a missing Chromium fails, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import zlib

import pytest

from irpass.diff import diff_models
from irpass.report import write_report_html
from tests.diff_models_for_tests import net, sample_report

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome",
                                           "google-chrome-stable") if shutil.which(n)), None)

MISSING = "no Chromium binary on PATH (Debian: apt-get install chromium; .ci/run installs it)"


@pytest.fixture(autouse=True)
def _chromium_present() -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING}; under CI this test must run")
        pytest.skip(MISSING)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def _chromium(args: list[str], tmp: pathlib.Path) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp)
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def _png_pixels(path: pathlib.Path):
    """(width, height, values, values_are_pixels): grey levels with Pillow, else filtered rows."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        with Image.open(path) as image:
            grey = image.convert("L")
            return grey.width, grey.height, list(grey.getdata()), True
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    idat = b""
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    # filtered bytes, not pixels: enough to tell a blank page (near-constant) from content
    return width, height, list(zlib.decompress(idat)[::97]), False


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    report = sample_report(diff_models(net(), net(fold_bn=True, qdq=True)).to_dict())
    page = tmp / "report.html"
    write_report_html(report, page)
    return tmp, page, report


def test_screenshot_has_content(report_page):
    tmp, page, _ = report_page
    png = tmp / "report.png"
    result = _chromium([f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()], tmp)
    assert png.is_file(), result.stderr[-2000:]
    width, height, pixels, are_pixels = _png_pixels(png)
    assert (width, height) == (1280, 2000)
    mean = sum(pixels) / len(pixels)
    variance = sum((p - mean) ** 2 for p in pixels) / len(pixels)
    assert variance > 100, f"screenshot looks blank (variance {variance:.1f})"
    if are_pixels:
        dark = sum(1 for p in pixels if p < 128) / len(pixels)
        assert dark > 0.005, f"almost no text or drawing on the page ({dark:.2%} dark pixels)"


def test_dom_has_loaded_the_report(report_page):
    tmp, page, report = report_page
    result = _chromium(["--dump-dom", page.as_uri()], tmp)
    dom = result.stdout
    assert 'id="irpass-report"' in dom, result.stderr[-2000:]
    for ident in ("passes-table", "chart-size", "chart-accuracy", "chart-sweeps",
                  "target-checks-table", "graph-regions", "region-0"):
        assert f'id="{ident}"' in dom, ident
    for record in report["passes"]:
        assert record["step"] in dom
    assert "BatchNormalization" in dom and "QuantizeLinear" in dom
