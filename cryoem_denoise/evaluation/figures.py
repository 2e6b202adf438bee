"""Matplotlib figures shared by the CLI, the benchmarks and the notebooks.

Images are shown with a robust contrast window (0.5 and 99.5 percentiles) and large images
are block-averaged down to at most ``max_side`` pixels first, so a 4k micrograph becomes a
PNG of a few hundred kilobytes that still shows the particles. PNGs are written atomically.
"""

import sys

import numpy as np
from skimage.transform import downscale_local_mean

from cryoem_denoise.io.atomic import atomic_output


def _matplotlib():
    """pyplot, on the file-only Agg backend unless a notebook shows figures inline."""

    import matplotlib  # lazy: imports matplotlib (start-up time; the Agg backend is chosen first)

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: imports matplotlib (start-up time; the Agg backend is chosen first)

    return plt


def display_image(image, max_side=1024):
    """Block-average ``image`` so its longer side is at most ``max_side`` pixels."""
    image = np.asarray(image, np.float32)
    factor = int(np.ceil(max(image.shape) / max_side))
    if factor <= 1:
        return image

    return downscale_local_mean(image, (factor, factor)).astype(np.float32)


def contrast_limits(image, low=0.5, high=99.5):
    lo, hi = np.percentile(image, [low, high])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def save_figure(fig, path, *, overwrite=False, protected=(), dpi=100):
    """Save a matplotlib figure as PNG atomically and close it."""
    plt = _matplotlib()
    try:
        with atomic_output(path, overwrite=overwrite, protected=protected, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def image_panels(panels, *, max_side=1024, shared_contrast=True, panel_inches=4.0, zoom=512):
    """Grayscale images side by side: ``panels`` is a list of ``(title, image)``, or of
    ``(title, image, "own")`` for a panel with its own contrast window (a difference map).

    With ``shared_contrast`` every other panel uses the first panel's window, so brightness
    and contrast can be compared across methods. For images larger than ``2 * zoom`` a second
    row shows the central ``zoom x zoom`` pixels at full resolution, where particles and
    noise are visible (a whole 4k micrograph on screen is averaged down 4-8 times).
    """
    plt = _matplotlib()
    big = zoom and min(np.shape(panels[0][1])) >= 2 * zoom
    own = [len(panel) > 2 and panel[2] == "own" for panel in panels]
    rows = [[(title, display_image(img, max_side)) for title, img, *_ in panels]]
    if big:
        crops = []
        for title, img, *_ in panels:
            cy, cx = (s // 2 for s in np.shape(img))
            crops.append((f"{title} (centre {zoom}x{zoom})",
                          np.asarray(img[cy - zoom // 2:cy + zoom // 2, cx - zoom // 2:cx + zoom // 2],
                                     np.float32)))
        rows.append(crops)
    fig, axes = plt.subplots(len(rows), len(panels),
                             figsize=(panel_inches * len(panels), panel_inches * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        limits = contrast_limits(row[0][1])
        for ax, (title, img), own_window in zip(axes[r], row, own):
            lo, hi = limits if shared_contrast and not own_window else contrast_limits(img)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def save_panels(path, panels, *, overwrite=False, protected=(), **kwargs):
    """:func:`image_panels` written to ``path``."""
    save_figure(image_panels(panels, **kwargs), path, overwrite=overwrite, protected=protected)


def metric_bars(summary, methods, labels, metric_names=(("psnr", "PSNR (dB)"), ("ssim", "SSIM"))):
    """Grouped bars of metrics per noise level (the paper's Fig. 10); ``summary`` maps
    ``str(sigma) -> method -> {metric: mean, metric_std: std}``."""
    plt = _matplotlib()
    sigmas = list(summary)
    fig, axes = plt.subplots(1, len(metric_names), figsize=(6 * len(metric_names), 4), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for ax, (key, title) in zip(axes[0], metric_names):
        for j, m in enumerate(methods):
            means = [summary[s][m][key] if m in summary[s] else np.nan for s in sigmas]
            stds = [summary[s][m].get(key + "_std", 0) if m in summary[s] else 0 for s in sigmas]
            ax.bar(np.arange(len(sigmas)) + (j - (len(methods) - 1) / 2) * width, means, width,
                   yerr=stds, label=labels.get(m, m), capsize=2)
        ax.set_xticks(np.arange(len(sigmas)))
        ax.set_xticklabels([_group_label(s) for s in sigmas])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _group_label(key):
    try:
        return f"σ = {float(key):g}"
    except ValueError:
        return str(key)


def loss_curves(histories, labels=None):
    """Generator and critic loss curves per run (the paper's Fig. 7); ``histories`` maps a
    run name to a dict with ``step``, ``g_loss`` and ``d_loss`` sequences."""
    plt = _matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, h in histories.items():
        label = (labels or {}).get(name, name)
        axes[0].plot(h["step"], h["g_loss"], label=label)
        axes[1].plot(h["step"], h["d_loss"], label=label)
    axes[0].set_title("generator loss")
    axes[1].set_title("critic loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def pixel_histograms(named_images, bins=128):
    """Pixel-value histograms on the [0, 255] scale (the paper's Fig. 2), one line each."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, img in named_images:
        hist, edges = np.histogram(np.asarray(img).ravel(), bins=bins, range=(0, 255), density=True)
        ax.plot((edges[:-1] + edges[1:]) / 2, hist, label=name)
    ax.set_xlabel("pixel value on [0, 255]")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def noise_spectrum_figure(spectrum, title=""):
    """The measured radial power of an image and the noise spectrum estimated from it
    (:class:`~cryoem_denoise.inference.spectrum.NoiseSpectrum`), log power against spatial
    frequency up to Nyquist; the cutoff below which the noise is taken as flat is marked."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    keep = spectrum.frequency <= 0.5
    k = spectrum.frequency[keep]
    ax.semilogy(k, spectrum.measured[keep], color="0.4", label="measured (noise and signal)")
    ax.semilogy(k, spectrum.power[keep], color="C3", lw=2, label="noise estimate")
    ax.axvline(spectrum.cutoff, color="0.6", ls=":", lw=1)
    ax.text(spectrum.cutoff, ax.get_ylim()[1], " flat below", va="top", fontsize=8, color="0.4")
    ax.set_xlabel("spatial frequency (cycles/px)")
    ax.set_ylabel("power ([0,255] units² per px)")
    ax.set_xlim(0, 0.5)
    ax.set_title(title or spectrum.summary(), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

