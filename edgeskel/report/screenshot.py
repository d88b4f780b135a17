"""Render a report.html in headless Chromium and save a PNG screenshot.

Why: a plot or table can be valid HTML and still be unreadable (labels clipped or drawn over
each other, a y-range that hides the gate). People read the rendered page, so the slow test
and the docs' figure come from rendering it the way a browser does, and someone looks at it.

    python -m edgeskel.report.screenshot runs/default/cpu/report.html docs/img/report-cpu.png \
        --height 2750 --scale 0.6 --colors 64
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH, or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(html: str | Path, png: str | Path, width: int = 1200, height: int = 2400,
               scale: float = 1.0, colors: int | None = None, timeout_s: float = 120) -> Path:
    """Screenshot the top `height` CSS pixels of `html` at `width` into `png`, optionally scaled
    down and reduced to `colors` palette colours (docs keep small images). Raises RuntimeError
    when no browser is installed or it fails."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no Chromium found (looked for {', '.join(BROWSERS)}); apt-get install -y chromium")
    html, png = Path(html).resolve(), Path(png)
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "shot.png"
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={td}/p",
               f"--window-size={width},{height}", f"--screenshot={raw}", html.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if not raw.is_file():
            raise RuntimeError(f"{browser} wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
        from PIL import Image

        img = Image.open(raw).convert("RGB")
        if scale != 1.0:
            img = img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        if colors:
            img = img.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)  # keeps the status colours
        png.parent.mkdir(parents=True, exist_ok=True)
        img.save(png, optimize=True)
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Screenshot a report.html in headless Chromium.")
    ap.add_argument("html")
    ap.add_argument("png")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--colors", type=int, default=None, help="palette colours (smaller files for docs)")
    a = ap.parse_args(argv)
    try:
        print(screenshot(a.html, a.png, a.width, a.height, a.scale, a.colors))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
