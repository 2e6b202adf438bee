"""report.html / report.csv of an apply run over many files, checked in headless Chromium."""

import csv
import io
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.ndimage import gaussian_filter

from cryoem_denoise.cli import cli
from cryoem_denoise.inference import report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Flags for a headless Chromium with no network (the machine has none).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def test_spectrum_summary_tells_white_from_coloured_noise():
    rng = np.random.default_rng(0)
    white = rng.normal(0, 1, (512, 512))
    whiteness, kept = report.spectrum_summary(white, white)
    assert 0.8 < whiteness < 1.2 and kept == pytest.approx(1.0)
    coloured = gaussian_filter(white, 1.5)  # a detector-like roll-off
    assert report.spectrum_summary(coloured)[0] < report.COLOURED
    assert report.spectrum_summary(white, 0.1 * white)[1] == pytest.approx(0.01, rel=1e-6)


def test_thumbnails_share_the_input_contrast():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 10, (1000, 700)).astype(np.float32)
    a, b = report.thumbnails(image, image * 0 + 100)
    small_in, small_out = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    assert max(small_in.size) <= report.THUMBNAIL and small_in.size == small_out.size
    assert np.ptp(np.asarray(small_in)) > 100  # the input's contrast stretched ...
    assert np.ptp(np.asarray(small_out)) <= 1   # ... and a flat output stays flat in it
    assert report.image_flags(np.zeros((8, 8))) == ["empty image"]
    assert report.image_flags(np.r_[np.zeros(90), np.ones(10)]) == ["saturated"]


@pytest.fixture
def run(tiny_model, tmp_path, clean_mrc):
    folder = tmp_path / "in"
    folder.mkdir()
    clean_mrc("in/a.mrc", (200, 180), seed=1)
    clean_mrc("in/b.mrcs", (2, 96, 96), stack=True, seed=2)
    (folder / "c_broken.mrc").write_bytes(b"garbage" * 300)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["apply", str(folder), "--model", str(tiny_model),
                                      "--out", str(out), "--tile", "64", "--overlap", "16",
                                      "-q"])
    assert result.exit_code == 3, result.output
    assert "report:" in result.output
    return out


def test_report_lists_every_input_with_its_numbers_and_flags(run):
    rows = list(csv.DictReader((run / "report.csv").open()))
    assert [r["file"] for r in rows] == ["a.mrc", "b.mrcs", "c_broken.mrc"]
    assert [r["status"] for r in rows] == ["denoised", "denoised", "failed"]
    assert rows[0]["shape"] == "180x200" and rows[1]["shape"] == "96x96x2"
    assert float(rows[0]["whiteness"]) > 0 and float(rows[0]["kept_mid_band"]) > 0
    assert "not an MRC file" in rows[2]["message"] and rows[2]["flags"] == "failed"
    text = (run / "report.html").read_text()
    assert text.count("data:image/png;base64,") == 4  # a pair per denoised file
    assert text.count('<tr class="') == 3 and "sortBy" in text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's chromium package; "
                                             ".ci/run installs it)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    page = (run / "report.html").resolve().as_uri()
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                          "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<tr class=") == 3 and "c_broken.mrc" in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           f"--screenshot={shot}", "--window-size=1400,700", page],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.shape == (700, 1400)
    # the table's text and the thumbnails: far from a blank page
    assert pixels.std() > 20 and (pixels < 100).mean() > 0.01
    keep = run.parent / "report_screenshot.png"  # for a person to look at
    shutil.copy(shot, keep)
