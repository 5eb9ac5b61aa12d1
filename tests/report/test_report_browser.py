"""report.html as a reader sees it: rendered by headless Chromium, every image decoded, the
table present, a screenshot taken. Skips (with the reason) where Chromium is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from bench.reporting.build import build_report

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# Runs after every image has loaded or failed: marks the result on <body> for --dump-dom.
PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-broken', String(broken.length));
  document.body.setAttribute('data-broken-names', broken.join('|'));
  const rows = document.querySelectorAll('#results-table tbody tr').length;
  document.body.setAttribute('data-table-rows', String(rows));
});
</script>
"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_chromium(scored_run: Path, tmp_path: Path) -> None:
    out = build_report(scored_run, tmp_path / "report")
    html = (out / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")

    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1)))
    assert int(attrs["data-images"]) >= 4  # sizing, steps, load, one grid per prompt
    assert attrs["data-broken"] == "0", attrs["data-broken-names"]
    assert int(attrs["data-table-rows"]) == 3
    assert "Claims checked" in dom.stdout

    shot = tmp_path / "report.png"
    result = _chromium(
        tmp_path, "--window-size=1400,2400", f"--screenshot={shot}", (out / "report.html").as_uri()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1400, 2400)
        colours = image.convert("L").getextrema()
    assert colours[0] < 64 and colours[1] > 192  # text on a page, not a blank screen
