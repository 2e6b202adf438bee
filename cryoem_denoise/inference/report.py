"""A report of an ``apply`` run a person can scan: ``report.html`` and ``report.csv``.

One row per input: a thumbnail pair (input and denoised, first section, the same contrast),
the noise level the model was given, a summary of the input's and the output's spectra, and
flags for what needs a look (a noise level or pixel size outside what the model was trained
on, coloured noise, an empty or saturated image, a failed file). ``report.html`` is one
static file (thumbnails embedded, a few lines of JavaScript to sort by a column; no server,
nothing fetched); ``report.csv`` holds the same numbers.

Spectrum summary (central crop of at most 1024² of the first section, radial power):

- *whiteness*: power at 0.35-0.5 cycles/px over power at 0.1-0.2 of the input. White noise
  gives about 1; detectors' transfer, binning and dose weighting make it fall towards
  Nyquist (0.2 and below is flagged "coloured noise": the model, trained on white noise,
  then removes less of it).
- *kept (mid band)*: output power over input power at 0.05-0.2 cycles/px, where noise
  dominates a micrograph and particles have their detail: near 1 means little was removed.
"""

import base64
import csv
import functools
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft as sp_fft

from cryoem_denoise.io.atomic import write_text

__all__ = ["ReportEntry", "spectrum_summary", "thumbnails", "write_report", "REPORT_FILES"]

#: The files :func:`write_report` writes into the output folder (``report_shardKofN.*`` in
#: a sharded run).
REPORT_FILES = ("report.html", "report.csv")
#: Thumbnail side (pixels).
THUMBNAIL = 256
#: Below this whiteness the noise is flagged as coloured.
COLOURED = 0.2
_CROP = 1024


@dataclass
class ReportEntry:
    """One input of the run."""

    file: str
    status: str                      # 'denoised', 'skipped' (outputs existed) or 'failed'
    message: str = ""                # why it failed
    shape: str = ""
    pixel_size: float = None
    noise_level: float = None        # sigma on [0, 255] given to the model
    noise_how: str = ""              # 'estimated', 'given', 'known'
    whiteness: float = None
    kept_mid_band: float = None
    flags: list = field(default_factory=list)
    thumbnails: tuple = None         # (input PNG bytes, output PNG bytes)


def _radial_power(image):
    h, w = np.shape(image)
    side = min(h, w, _CROP)
    y, x = (h - side) // 2, (w - side) // 2
    crop = np.asarray(image[y:y + side, x:x + side], np.float32)
    spectrum = sp_fft.rfft2(crop - crop.mean(dtype=np.float64))
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return power, _radius(side)


@functools.lru_cache(maxsize=4)
def _radius(side):
    """Radial frequency (cycles/px) of the ``rfft2`` grid of a ``side``² crop (read-only)."""
    radius = np.hypot(np.fft.fftfreq(side)[:, None], np.fft.rfftfreq(side)[None, :])
    radius.flags.writeable = False
    return radius


def _band(power, radius, low, high):
    mask = (radius >= low) & (radius < high)
    return float(power[mask].mean()) if mask.any() else float("nan")


def spectrum_summary(image, output=None):
    """``(whiteness, kept_mid_band)`` of an input (and its output); see the module notes."""
    power, radius = _radial_power(image)
    low = _band(power, radius, 0.1, 0.2)
    whiteness = _band(power, radius, 0.35, 0.5) / low if low > 0 else float("nan")
    kept = None
    if output is not None:
        out_power, _ = _radial_power(output)
        mid = _band(power, radius, 0.05, 0.2)
        kept = _band(out_power, radius, 0.05, 0.2) / mid if mid > 0 else float("nan")
    return whiteness, kept


def _binned(image, side=THUMBNAIL):
    image = np.asarray(image, np.float32)
    factor = max(1, int(np.ceil(max(image.shape) / side)))
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _png(image, low, high):
    scaled = np.clip((image - low) / (high - low if high > low else 1.0), 0, 1)
    buf = io.BytesIO()
    Image.fromarray(np.round(scaled * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def thumbnails(image, output):
    """PNG bytes of ``image`` and ``output`` binned to at most :data:`THUMBNAIL` pixels, with
    the same contrast (the input's 0.5-99.5 percentiles)."""
    small_in, small_out = _binned(image), _binned(output)
    low, high = np.percentile(small_in, [0.5, 99.5])
    return _png(small_in, low, high), _png(small_out, low, high)


def image_flags(image):
    """Flags of an input section: empty (constant) or saturated (1 % of pixels at its
    maximum)."""
    image = np.asarray(image)
    if not np.ptp(image):
        return ["empty image"]
    top = np.count_nonzero(image == image.max()) / image.size
    return ["saturated"] if top > 0.01 else []


_COLUMNS = [("file", "file"), ("status", "status"), ("shape", "shape"),
            ("pixel_size", "pixel size (Å)"), ("noise_level", "noise σ [0,255]"),
            ("noise_how", "σ from"), ("whiteness", "whiteness"),
            ("kept_mid_band", "kept (mid band)"), ("flags", "flags"), ("message", "message")]


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "; ".join(value)
    return str(value)


def _csv(entries):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([key for key, _ in _COLUMNS])
    for entry in entries:
        writer.writerow([_cell(getattr(entry, key)) for key, _ in _COLUMNS])
    return buf.getvalue()


_SCRIPT = """
function sortBy(col) {
  const table = document.getElementById('files');
  const rows = Array.from(table.tBodies[0].rows);
  const down = table.dataset.col == col && table.dataset.dir != 'down';
  const key = r => { const t = r.cells[col].dataset.v ?? r.cells[col].textContent;
                     const n = parseFloat(t); return isNaN(n) ? t : n; };
  rows.sort((a, b) => { const x = key(a), y = key(b);
                        return (x < y ? -1 : x > y ? 1 : 0) * (down ? -1 : 1); });
  rows.forEach(r => table.tBodies[0].appendChild(r));
  table.dataset.col = col; table.dataset.dir = down ? 'down' : 'up';
}
"""

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: middle; }
th { background: #eee; cursor: pointer; position: sticky; top: 0; }
td.flags { color: #a40000; }
tr.failed td { background: #fde8e8; }
td.pair { white-space: nowrap; }
img { width: 160px; height: auto; image-rendering: pixelated; margin-right: 2px; }
"""


def _html(entries, title, summary):
    head = "".join(f'<th onclick="sortBy({i + 1})">{html.escape(label)}</th>'
                   for i, (_, label) in enumerate(_COLUMNS))
    rows = []
    for entry in entries:
        pair = ""
        if entry.thumbnails:
            pair = "".join(f'<img alt="{what}" title="{what}" src="data:image/png;base64,'
                           f'{base64.b64encode(data).decode()}">'
                           for what, data in zip(("input", "denoised"), entry.thumbnails))
        cells = []
        for key, _ in _COLUMNS:
            value = getattr(entry, key)
            sort = f' data-v="{value:.6g}"' if isinstance(value, float) else ""
            cls = ' class="flags"' if key == "flags" else ""
            cells.append(f"<td{cls}{sort}>{html.escape(_cell(value))}</td>")
        rows.append(f'<tr class="{entry.status}"><td class="pair">{pair}</td>'
                    f'{"".join(cells)}</tr>')
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
            "<p>Thumbnails: input | denoised, first section, the same contrast. Click a "
            "column to sort. <i>whiteness</i>: the input's power at 0.35-0.5 over 0.1-0.2 "
            "cycles/px (1: white noise; low: coloured). <i>kept</i>: the output's power over "
            "the input's at 0.05-0.2 cycles/px.</p>"
            f'<table id="files"><thead><tr><th>input | denoised</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></body></html>\n")


def write_report(out_dir, entries, title="cryoem-denoise apply", summary="", overwrite=True,
                 stem="report"):
    """Write ``STEM.html`` and ``STEM.csv`` into ``out_dir`` (atomically); return their
    paths."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.html", out_dir / f"{stem}.csv"]
    write_text(paths[1], _csv(entries), overwrite=overwrite)
    write_text(paths[0], _html(entries, title, summary), overwrite=overwrite)
    return paths
