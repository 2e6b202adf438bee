"""Denoise the two independent halves of exposures and judge the result by their agreement.

Real micrographs have no clean version, so the field judges a denoiser on them the way it
judges maps: by the Fourier ring correlation (FRC) of two independent halves. Movie frames
split into even and odd sums (MotionCor2, RELION and cryoSPARC write them) give two images
of the same specimen with independent shot noise. :func:`denoise_half_pair` denoises each
half separately with the same model, writes their average (the denoised full exposure), and
reports, per section, the FRC = 0.143 resolution of the raw halves and of the denoised
halves: a no-reference quality figure (a denoiser that invents detail shared by both halves
would raise it falsely, which is why the halves are denoised separately, never together).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoem_denoise.errors import OutputError
from cryoem_denoise.evaluation import metrics
from cryoem_denoise.evaluation.figures import _matplotlib, save_figure
from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.io.atomic import write_text


@dataclass
class HalfPairResult:
    """What :func:`denoise_half_pair` wrote and measured."""

    output: Path
    report: Path
    figure: Path
    sections: list  # per section: {'raw': FrcResolution dict, 'denoised': ...}


def output_paths(path_a, out_dir, suffix="_denoised", fmt="mrc"):
    """``(average, report JSON, FRC figure)`` paths for the pair whose first half is
    ``path_a``; the average in format ``fmt`` (the input's by default)."""
    stem, _ = image_io.split_name(path_a)
    out_dir = Path(out_dir)
    return (out_dir / image_io.output_name(stem, suffix, fmt, path_a),
            out_dir / f"{stem}{suffix}_frc.json", out_dir / f"{stem}{suffix}_frc.png")


def denoise_half_pair(denoiser, path_a, path_b, out_dir, *, suffix="_denoised",
                      overwrite=False, pixel_size=None):
    """Denoise two halves, write their average, and measure their FRC before and after.

    Parameters
    ----------
    denoiser : Denoiser
    path_a, path_b : path-like
        The two halves (same shape and pixel size; images or stacks).
    pixel_size : float, optional
        Å per pixel where the header has none (for the resolution in Å).

    Raises
    ------
    InputError, OutputError
        Unreadable or mismatched halves, an output that exists (without ``overwrite``) or
        would overwrite an input; nothing is written then.
    """
    sections_a, header_a = image_io.read_sections(path_a)
    sections_b, header_b = image_io.read_sections(path_b)
    mrc.check_same_geometry(header_a, header_b, path_b, "the other half's")
    mrc.check_sections(sections_a, path_a)
    mrc.check_sections(sections_b, path_b)
    size = header_a.pixel_size
    if header_a.pixel_size_is_placeholder:
        size = pixel_size
    fmt = header_a.format
    if fmt == "png" and len(sections_a) > 1:
        fmt = "tiff"
    out, report, figure = output_paths(path_a, out_dir, suffix, fmt)
    protected = (Path(path_a), Path(path_b))
    for p in (out, report, figure):
        if p.resolve() in {q.resolve() for q in protected}:
            raise OutputError("would overwrite an input half (use another --out)", p)
        if p.exists() and not overwrite:
            raise OutputError("exists (use --overwrite to replace it)", p)
    denoiser.check_pixel_size(size)
    average = np.empty(sections_a.shape, np.float32)
    results, curves = [], []
    for i, (a, b) in enumerate(zip(sections_a, sections_b)):
        da, db = denoiser.denoise(a), denoiser.denoise(b)
        average[i] = 0.5 * (da + db)
        raw = metrics.frc_resolution(a, b, pixel_size=size)
        den = metrics.frc_resolution(da, db, pixel_size=size)
        results.append({"section": i, "raw": raw.to_dict(), "denoised": den.to_dict(),
                        "raw_text": str(raw), "denoised_text": str(den)})
        if i < 4:
            curves.append((i, metrics.frc(a, b), metrics.frc(da, db)))
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (f_raw, v_raw), (f_den, v_den) in curves:
        ax.plot(f_raw, v_raw, color="0.6", lw=1, label="raw halves" if i == 0 else None)
        ax.plot(f_den, v_den, color="C0", lw=1.5, label="denoised halves" if i == 0 else None)
    ax.axhline(0.143, color="C3", ls="--", lw=1, label="0.143")
    ax.set_xlabel("spatial frequency (cycles/pixel)")
    ax.set_ylabel("Fourier ring correlation")
    ax.set_title(f"{Path(path_a).name} / {Path(path_b).name}")
    ax.legend()
    kind = None if header_a.kind == "image" else header_a.kind

    image_io.write_image(out, average, fmt=fmt, voxel_size=header_a.voxel_size, kind=kind,
                         overwrite=overwrite, protected=protected,
                         label="cryoem-denoise: average of denoised halves")

    write_text(report, json.dumps({"halves": [str(path_a), str(path_b)], "pixel_size": size,
                                   "sections": results}, indent=2) + "\n", overwrite=overwrite)
    save_figure(fig, figure, overwrite=overwrite, protected=protected)
    return HalfPairResult(out, report, figure, results)
