"""Tests of the HTML report as a person sees it: rendered by headless Chromium, screenshot read.

Pillow is not a dependency, so the screenshot's PNG is decoded here (zlib and the five
PNG filters). The page itself has no script; a copy with a probe script reports where
Chromium laid out each chart and table, and the screenshot must show them there.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest
from test_report import explained, pure_report

from monitor.reports.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

SCALE = 0.5
"""Device scale of the screenshot: a quarter of the pixels to decode, layout unchanged."""
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)
PROBE = """<script>
addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
  const out = {height: document.documentElement.scrollHeight,
               width: document.documentElement.scrollWidth, inner: innerWidth,
               font: parseFloat(getComputedStyle(document.body).fontSize),
               charts: [...document.querySelectorAll('svg.chart')].map(box),
               tables: [...document.querySelectorAll('table')].map(box)};
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

Pixels = tuple[int, int, int, list[bytes]]


def _add_byte(total: int, value: int) -> int:
    return (total + value) & 255


def decode_png(data: bytes) -> Pixels:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB(A) non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    width = height = depth = color = interlace = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            chunks.append(chunk)
        position += 12 + length
    assert (depth, interlace) == (8, 0)
    assert color in (2, 6)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    # The Up filter adds two rows bytewise: done on big integers without carries between
    # bytes, it costs a few operations per row instead of one per byte.
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    rows: list[bytes] = []
    previous = bytes(stride)
    for index in range(height):
        start = index * (stride + 1)
        kind, line = raw[start], raw[start + 1:start + 1 + stride]
        if kind == 0:
            row = line
        elif kind == 2:
            a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
            row = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(stride, "big")
        elif kind == 1:
            buffer = bytearray(stride)
            for channel in range(bpp):
                summed: list[int] = list(accumulate(list(line[channel::bpp]), _add_byte))
                buffer[channel::bpp] = bytes(summed)
            row = bytes(buffer)
        else:
            buffer = bytearray(line)
            for i in range(stride):
                left = buffer[i - bpp] if i >= bpp else 0
                up = previous[i]
                if kind == 3:
                    buffer[i] = (buffer[i] + ((left + up) >> 1)) & 255
                    continue
                corner = previous[i - bpp] if i >= bpp else 0
                guess = left + up - corner
                far_left, far_up = abs(guess - left), abs(guess - up)
                far_corner = abs(guess - corner)
                best = left if far_left <= far_up and far_left <= far_corner else (
                    up if far_up <= far_corner else corner)
                buffer[i] = (buffer[i] + best) & 255
            row = bytes(buffer)
        rows.append(row)
        previous = row
    return width, height, bpp, rows


def region(pixels: Pixels, box: Sequence[float]) -> list[tuple[int, int, int]]:
    """The RGB pixels of a CSS-pixel box of the page."""
    width, height, bpp, rows = pixels
    left, top, box_width, box_height = (round(v * SCALE) for v in box)
    found = []
    for y in range(max(0, top), min(height, top + box_height)):
        row = rows[y]
        for x in range(max(0, left), min(width, left + box_width)):
            found.append((row[x * bpp], row[x * bpp + 1], row[x * bpp + 2]))
    return found


def near(pixel: tuple[int, int, int], colour: str, tolerance: int = 40) -> bool:
    """Whether ``pixel`` is within ``tolerance`` of ``#rrggbb`` on every channel."""
    target = bytes.fromhex(colour[1:])
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, target, strict=True))


def inked(pixels: list[tuple[int, int, int]]) -> float:
    """Share of pixels that are not (near) white: something is drawn there."""
    return sum(1 for p in pixels if min(p) < 225) / max(1, len(pixels))


def _chromium(*arguments: str, profile: Path) -> subprocess.Popen[str]:
    assert CHROMIUM is not None
    return subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def _probe(output: str) -> dict[str, Any]:
    match = re.search(r'<pre id="probe">(.*?)</pre>', output, re.DOTALL)
    assert match is not None, "the probe did not run"
    data: dict[str, Any] = json.loads(match.group(1).replace("&quot;", '"'))
    return data


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report laid out on a desktop and a narrow screen, screenshot and printed."""
    folder = tmp_path_factory.mktemp("chromium")
    page = render_html(pure_report(explained()))
    (folder / "report.html").write_text(page, encoding="utf-8")
    (folder / "probe.html").write_text(page.replace("</body>", PROBE + "</body>"),
                                       encoding="utf-8")
    desktop = _chromium("--window-size=1280,2000", "--dump-dom",
                        (folder / "probe.html").as_uri(), profile=folder / "p1")
    narrow = _chromium("--window-size=390,844", "--dump-dom",
                       (folder / "probe.html").as_uri(), profile=folder / "p2")
    printed = _chromium(f"--print-to-pdf={folder / 'report.pdf'}", "--no-pdf-header-footer",
                        (folder / "report.html").as_uri(), profile=folder / "p3")
    layout = _probe(desktop.communicate(timeout=90)[0])
    phone = _probe(narrow.communicate(timeout=90)[0])
    shot = _chromium(f"--window-size=1280,{int(layout['height'])}",
                     f"--force-device-scale-factor={SCALE}",
                     f"--screenshot={folder / 'report.png'}", (folder / "report.html").as_uri(),
                     profile=folder / "p4")
    shot.communicate(timeout=90)
    printed.communicate(timeout=90)
    return {
        "layout": layout,
        "phone": phone,
        "pixels": decode_png((folder / "report.png").read_bytes()),
        "pdf": (folder / "report.pdf").read_bytes(),
    }


def test_the_screenshot_shows_every_chart(rendered: dict[str, Any]) -> None:
    """Each chart's box in the screenshot is drawn on, in the chart's own colours."""
    layout, pixels = rendered["layout"], rendered["pixels"]
    charts = layout["charts"]
    assert len(charts) == 5  # daily % met, two policies' first responses, heatmap, distribution
    colours = ["#2b6cb0", "#dd6b20", "#dd6b20", "#c53030", "#2f855a"]
    for box, colour in zip(charts, colours, strict=True):
        assert box[2] > 300
        assert box[3] > 100
        seen = region(pixels, box)
        assert inked(seen) > 0.02, box
        assert sum(near(p, colour) for p in seen) > 50, (box, colour)
    heat = region(pixels, charts[3])
    assert sum(near(p, "#9b1c1c", 60) or near(p, "#fca5a5", 60) for p in heat) > 100


def test_the_screenshot_shows_the_tables(rendered: dict[str, Any]) -> None:
    """Every table is on the page with text in it; the margin beside the page stays empty."""
    layout, pixels = rendered["layout"], rendered["pixels"]
    assert len(layout["tables"]) >= 10
    for box in layout["tables"]:
        seen = region(pixels, box)
        text = sum(1 for p in seen if max(p) < 170) / max(1, len(seen))
        assert inked(seen) > 0.01, box
        assert text > 0.005, box
    margin = region(pixels, [1140, 0, 120, layout["height"]])
    assert inked(margin) < 0.001


def test_it_reads_on_a_narrow_screen(rendered: dict[str, Any]) -> None:
    """On a phone-sized window nothing overflows the page and the text stays full size.

    Headless Chromium will not make a window narrower than 500 CSS pixels, so that is
    the width checked; the phone layout applies from 600 down.
    """
    phone = rendered["phone"]
    assert phone["inner"] <= 600
    assert phone["width"] <= phone["inner"]
    assert phone["font"] >= 14
    assert all(box[0] >= 0 and box[0] + box[2] <= phone["inner"] for box in phone["charts"])


def test_it_prints_to_pdf(rendered: dict[str, Any]) -> None:
    """Printing gives a PDF of a few A4 pages (the print stylesheet keeps blocks whole)."""
    pdf = rendered["pdf"]
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 2 <= pages <= 20
    assert re.search(rb"/MediaBox ?\[0 0 59[45]\.?\d* 84[12]", pdf)  # A4, as @page asks
