"""The documentation site: built by mkdocs in strict mode (a broken link or anchor fails),
its reference pages the ones the code makes, its picture the one the report code draws."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import need_binary
from PIL import Image

from exporter.devtools import reference

ROOT = Path(__file__).parent.parent


def test_the_reference_pages_are_the_ones_the_code_makes():
    for name, make in reference.PAGES.items():
        assert (ROOT / "docs" / name).read_text() == make(), \
            f"docs/{name} is stale: run python -m exporter.devtools.reference"


def test_the_site_builds_in_strict_mode(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = {p.relative_to(tmp_path / "site").as_posix()
             for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "troubleshooting/index.html",
            "reference/metrics/index.html"} <= pages


def test_the_picture_is_page_one_of_a_report(tmp_path):
    need_binary("pdftoppm")
    done = subprocess.run([sys.executable, "-m", "exporter.devtools.picture",
                           str(tmp_path / "report.png")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    made, committed = Image.open(tmp_path / "report.png"), Image.open(
        ROOT / "docs" / "images" / "report.png")
    assert made.size == committed.size == (702, 497)  # A4 landscape at 60 dpi
