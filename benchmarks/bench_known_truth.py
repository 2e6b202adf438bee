"""Known truth on a second, independent simulator: denoisers under detector-coloured shot noise.

Run: ``.venv/bin/python benchmarks/bench_known_truth.py [--quick] [--model DIR]``. The
defaults (45 noisy 256² images, 3 per cell) took 13.4 minutes on 2 CPU cores shared with two
other jobs (load average 5-6), BM3D (5.5 s per call there, 1.9 s on quieter cores) and Topaz
(4.5 s per call, mostly its start-up) taking 90 % of it; alone on 2 cores it should take
about 6 minutes (not measured). ``--quick`` took 53 s. Needs the ``bench`` extra
(``pip install -e .[bench]``: cryoJAX, which brings equinox, jaxtyping, mdtraj, mmdf and
nufftax); Topaz runs when ``.venv-topaz`` and ``benchmarks/peers/topaz_denoise.py`` exist
(``make peers``), else its column says not run.

Clean fields come from **cryoJAX** 0.6 (Michael O'Brien and contributors, LGPL-2.1,
https://github.com/michael-0brien/cryojax), an image simulator written independently of this
package's (:mod:`cryoem_denoise.data.simulate`, :mod:`cryoem_denoise.data.heldout`): atoms
with Peng et al.'s (1996) five-Gaussian electron scattering factors per element, projected
in Fourier space (``GaussianFourierVolume``, non-uniform FFT), and its own weak-phase CTF
with a B-factor envelope, giving the image *contrast* in physical units. Each field sums the
contrast of a few particles at random orientations and positions (they may overlap and
cross the edge), CTF on a canvas twice the field's side; no ice. Only the held-out
structures are used (the Biopython test models,
:data:`cryoem_denoise.data.datasets.HELDOUT_STRUCTURES`); a training structure stops the run.

Each field is recorded at 5, 20 and 60 e/px by the detector transfers of
:mod:`cryoem_denoise.data.detector` (:data:`DETECTORS`): the paper's white Gaussian
noise, a counting detector, super-resolution binned 2x by real-space averaging and by
Fourier cropping (fields simulated at half the pixel size and twice the side, then binned),
and a dose-weighted sum of 40 frames. The shot noise's contrast is the field's own
(``expected_counts`` with ``contrast`` = the std of cryoJAX's contrast), so the per-pixel
SNR is physical: low.

The truth is the detector's noise-free image (the field through the detector's transfer,
:func:`~cryoem_denoise.data.detector.apply_detector`'s target): denoising, not deblurring.
Methods, all on the same noisy image:

* ``ours``: ``Denoiser.load(model).denoise(noisy, pixel_size=...)`` on the electron counts
  as they are (the Denoiser does its own scaling, noise estimate and whatever else it does);
* ``compare`` (``--compare DIR``): a second model folder, run as ``ours`` is (a model
  under selection beside the shipped one); ``--methods`` runs a subset (e.g. ``ours
  compare noisy`` to follow a training run without the peers' minutes);
* ``bm3d``: BM3D with sigma estimated from the image (``noise.estimate_sigma``, white);
* ``bm3d_psd``: BM3D given the true noise spectrum as ``sigma_psd``
  (:func:`~cryoem_denoise.data.detector.noise_power_spectrum`);
* ``topaz``: Topaz-Denoise's pretrained model (``benchmarks/peers/topaz_denoise.py``);
* ``blur``: a Gaussian blur whose width (0.5-4 px) is chosen per image for the best PSNR:
  an oracle, the best any blur can do;
* ``noisy``: the input.

BM3D and the blur work on the noisy image mapped to [0, 255] by its 0.5-99.5 percentiles
(the spectrum scaled with it). Scores: PSNR (peak 255) and SSIM of each output after a
per-image least-squares affine fit to the truth on [0, 255] (:func:`affine_fit`: scale and
offset are free, so a method is not penalised for its units); ``hf_kept``, the fraction of
the truth's power above 0.25 cycles/px the output keeps, ``Σ Re(O T*) / Σ |T|²`` over those
frequencies (1 for the noisy input on average: noise does not count, only the part
coherent with the truth), and ``hf_power``, the output's power there over the truth's
(noise counts), both pooled over a cell's fields (sums of sums: one 256² field has too
little signal up there for a stable ratio). Every cell uses the same fields.

Also the paper's protocol on the same fields: each field min-max scaled to [0, 255] plus
white Gaussian noise of sigma 10, 25, 40 and 80 (``noise.add_protocol_noise``), ours
(``denoise``) against BM3D with the true sigma, PSNR and SSIM plain (as the paper) and
after the affine fit.

Results: ``benchmarks/results/known_truth.json`` and ``known_truth.png`` (``--result``;
``--quick`` writes ``known_truth_quick.*``).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from common import RESULTS, quiet_tf, save

quiet_tf()

import bm3d  # noqa: E402

from cryoem_denoise import Denoiser  # noqa: E402
from cryoem_denoise.data import datasets, noise  # noqa: E402
from cryoem_denoise.data import detector as det  # noqa: E402
from cryoem_denoise.evaluation import metrics  # noqa: E402
from cryoem_denoise.evaluation.baselines import bm3d_denoise  # noqa: E402
from cryoem_denoise.model import model_store  # noqa: E402

# bm4d 4.2.5 (BM3D's engine) calls np.trapz, which NumPy 2.4 removed, on its coloured-noise
# path only (sigma_psd an array): give it the renamed function, for this benchmark's process.
if not hasattr(np, "trapz"):
    np.trapz = np.trapezoid

ROOT = Path(__file__).resolve().parents[1]
#: Topaz's interpreter and script (``make peers`` makes both).
TOPAZ = (ROOT / ".venv-topaz" / "bin" / "python",
         ROOT / "benchmarks" / "peers" / "topaz_denoise.py")
METHODS = ("ours", "compare", "bm3d", "bm3d_psd", "topaz", "blur", "noisy")
DOSES = (5.0, 20.0, 60.0)
SIGMAS = (10.0, 25.0, 40.0, 80.0)
BLUR_WIDTHS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
HF_CUTOFF = 0.25  # cycles/px

#: The fields' settings: field ``i`` is held-out structure ``i % 3`` in setting ``i % 2``;
#: every detector x dose cell uses fields ``0 .. --fields - 1``.
SETTINGS = (
    {"name": "fine", "pixel_size": 1.0, "defocus_um": (0.8, 1.5), "particles": (3, 5)},
    {"name": "coarse", "pixel_size": 1.8, "defocus_um": (1.8, 3.0), "particles": (8, 14)},
)
MICROSCOPE = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07,
              "b_factor": 80.0, "astigmatism_a": (0.0, 500.0), "pad_scale": 2.0}


def detectors(pixel_size):
    """The detector transfers benchmarked, at the middle of :data:`detector.RANGES`."""
    counting = det.Counting(blur=0.2, sharing=0.08, efficiency=0.88)
    super_counting = det.Counting(blur=0.4, sharing=0.15, efficiency=0.88)
    return {"white": det.White(), "counting": counting,
            "super_average": det.SuperResolution(super_counting, "average"),
            "super_fourier": det.SuperResolution(super_counting, "fourier"),
            "dose_weighted": det.DoseWeighted(pixel_size, 40, counting)}


DETECTORS = tuple(detectors(1.0))
#: ``--quick`` runs these (one of each kind of colouring).
QUICK_DETECTORS = ("counting", "super_average", "dose_weighted")


# -- the second simulator: cryoJAX -----------------------------------------------------------
def check_heldout(names):
    """Stop unless every name is a held-out structure and none is a training one."""
    for name in names:
        if name in datasets.TRAINING_STRUCTURES or name not in datasets.HELDOUT_STRUCTURES:
            raise SystemExit(f"{name} is not a held-out structure (training: "
                             f"{', '.join(datasets.TRAINING_STRUCTURES)}); refusing to score on it")


class CryojaxFields:
    """Clean fields of atomic models by cryoJAX (contrast, physical units)."""

    def __init__(self, paths):
        # lazy: JAX, equinox and cryoJAX are benchmark-only (the bench extra)
        import cryojax
        import cryojax.simulator as cxs
        import equinox as eqx
        from cryojax.ndimage import FourierGaussian

        self.cxs, self.envelope, self.version = cxs, FourierGaussian, cryojax.__version__
        self.volumes = {name: cxs.load_tabulated_volume(
            str(path), output_type=cxs.GaussianFourierVolume, selection_string="not water")
            for name, path in paths.items()}
        self.atoms = {name: int(sum(np.shape(p)[0] for p in _positions(v)))
                      for name, v in self.volumes.items()}

        @eqx.filter_jit
        def contrast(volume, config, pose, transfer):
            model = cxs.make_image_model(volume, config, pose, transfer, quantity_mode="contrast")
            return model.simulate()

        self._contrast = contrast

    def draw(self, setting, rng):
        """Random particles, orientations, positions (Å) and CTF of one field."""
        lo, hi = setting["particles"]
        count = int(rng.integers(lo, hi + 1))
        quats = _random_quaternions(count, rng)
        return {"particles": count, "quaternions_wxyz": quats.tolist(),
                "offsets_a": rng.uniform(-0.5, 0.5, (count, 2)).tolist(),  # x field sides
                "defocus_um": float(rng.uniform(*setting["defocus_um"])),
                "astigmatism_a": float(rng.uniform(*MICROSCOPE["astigmatism_a"])),
                "astigmatism_angle": float(rng.uniform(0, 180))}

    def field(self, name, side, pixel_size, p):
        """The contrast image ``(side, side)`` of draw ``p`` at ``pixel_size`` Å/px."""
        cxs = self.cxs
        config = cxs.BasicImageConfig((side, side), pixel_size, MICROSCOPE["voltage_kv"],
                                      pad_scale=MICROSCOPE["pad_scale"])
        ctf = cxs.AstigmaticCTF(defocus_in_angstroms=p["defocus_um"] * 1e4,
                                astigmatism_in_angstroms=p["astigmatism_a"],
                                astigmatism_angle=p["astigmatism_angle"],
                                spherical_aberration_in_mm=MICROSCOPE["cs_mm"])
        transfer = cxs.ContrastTransferTheory(
            ctf, envelope=self.envelope(1.0, MICROSCOPE["b_factor"]),
            amplitude_contrast_ratio=MICROSCOPE["amplitude_contrast"])
        extent = side * pixel_size
        image = np.zeros((side, side))
        for q, (ox, oy) in zip(p["quaternions_wxyz"], p["offsets_a"]):
            pose = cxs.QuaternionPose(ox * extent, oy * extent, wxyz=np.asarray(q))
            image += np.asarray(self._contrast(self.volumes[name], config, pose, transfer))
        return image


def _positions(volume):
    pos = volume.positions
    return pos if isinstance(pos, (tuple, list)) else [pos]


def _random_quaternions(n, rng):
    """``n`` rotations uniform on SO(3) as unit quaternions ``(w, x, y, z)``, w >= 0."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.sign(q[:, :1] + (q[:, :1] == 0))


class FieldBank:
    """Field ``i``: structure ``i % 3`` in setting ``i % 2`` with its own draw, simulated on
    first use at its pixel size (``clean``) and at half of it, twice the side
    (``clean_super``, for the binned detectors)."""

    def __init__(self, sim, names, side, seed):
        self.sim, self.names, self.side, self.seed = sim, list(names), side, seed
        self.fields = {}
        self.seconds = 0.0

    def get(self, i, super_resolution=False):
        t0 = time.perf_counter()
        if i not in self.fields:
            name, setting = self.names[i % len(self.names)], SETTINGS[i % len(SETTINGS)]
            p = self.sim.draw(setting, np.random.default_rng([self.seed, i]))
            self.fields[i] = {"structure": name, "setting": setting["name"],
                              "pixel_size": setting["pixel_size"], **p}
        f = self.fields[i]
        key = "clean_super" if super_resolution else "clean"
        if key not in f:
            side = 2 * self.side if super_resolution else self.side
            px = f["pixel_size"] / 2 if super_resolution else f["pixel_size"]
            f[key] = self.sim.field(f["structure"], side, px, f)
        self.seconds += time.perf_counter() - t0
        return f


# -- scoring ---------------------------------------------------------------------------------
def affine_fit(output, reference):
    """``a * output + b`` with ``a, b`` minimising the squared difference to ``reference``."""
    x = np.asarray(output, np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.asarray(reference, np.float64).ravel(), rcond=None)
    return (a * np.asarray(output, np.float64) + b).astype(np.float32)


def to_255(image):
    """``(scaled, a, b)``: ``image`` mapped to [0, 255] by ``min``/``max``."""
    lo, hi = float(np.min(image)), float(np.max(image))
    a = 255.0 / (hi - lo) if hi > lo else 1.0
    return ((image - lo) * a).astype(np.float32), a, -lo * a


def percentile_255(image, low=0.5, high=99.5):
    """``(scaled, a, b)``: ``image`` mapped to [0, 255] by its percentiles, not clipped."""
    lo, hi = np.percentile(image, [low, high])
    a = 255.0 / (hi - lo) if hi > lo else 1.0
    return ((image - lo) * a).astype(np.float32), a, -lo * a


def _high_band(shape):
    ky, kx = det.frequencies(shape)
    return np.hypot(ky, kx) > HF_CUTOFF


def high_frequency(output, truth):
    """Sums over the frequencies above :data:`HF_CUTOFF`: ``Re(O T*)``, ``|T|²`` and
    ``|O|²`` (``hf_cross``, ``hf_truth``, ``hf_output``); their ratios are pooled over a
    cell's images (:func:`summarise`), the coherent part being small beside the noise in one."""
    band = _high_band(truth.shape)
    o = np.fft.fft2(output - np.mean(output))[band]
    t = np.fft.fft2(truth - np.mean(truth))[band]
    return {"hf_cross": float(np.sum((o * np.conj(t)).real)),
            "hf_truth": float(np.sum(np.abs(t) ** 2)), "hf_output": float(np.sum(np.abs(o) ** 2))}


def score(output, truth, ref255):
    """PSNR and SSIM after the affine fit, and the high-frequency sums (output's units)."""
    fitted = affine_fit(output, ref255)
    return {"psnr": metrics.psnr(ref255, fitted), "ssim": metrics.ssim(ref255, fitted),
            **high_frequency(np.asarray(output, np.float64), truth)}


# -- the methods -----------------------------------------------------------------------------
def topaz_status():
    """``None`` if Topaz can run, else why not."""
    missing = [str(p.relative_to(ROOT)) for p in TOPAZ if not p.exists()]
    return f"not run: {', '.join(missing)} missing (make peers)" if missing else None


def run_topaz(image, threads=2):
    """Topaz-Denoise on one 2D image, in its units (a subprocess in ``.venv-topaz``)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(src, np.asarray(image, np.float32))
        proc = subprocess.run([str(TOPAZ[0]), str(TOPAZ[1]), str(src), str(dst),
                               "--threads", str(threads)], check=False, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"Topaz failed: {proc.stderr.strip().splitlines()[-1:]}")
        return np.load(dst), json.loads(proc.stdout.strip().splitlines()[-1])


def bm3d_psd(image255, psd):
    """BM3D given the noise PSD (``E|fft2|² / pixels`` on [0, 255]) of an image on [0, 255]."""
    sigma_psd = psd * image255.size / 255.0 ** 2  # bm3d: unnormalised PSD on [0, 1]
    out = bm3d.bm3d(np.asarray(image255, np.float64) / 255.0, sigma_psd=sigma_psd)
    return (np.asarray(out) * 255.0).astype(np.float32)


def oracle_blur(image255, ref255):
    """The Gaussian blur of :data:`BLUR_WIDTHS` with the best fitted PSNR; ``(out, width)``."""
    best = None
    for width in BLUR_WIDTHS:
        out = gaussian_filter(image255, width, mode="reflect")
        p = metrics.psnr(ref255, affine_fit(out, ref255))
        if best is None or p > best[0]:
            best = (p, out, width)
    return best[1], best[2]


class Runner:
    """Runs every method on one noisy image and scores it; keeps times and warnings."""

    def __init__(self, denoiser, topaz, threads, methods=METHODS, compare=None):
        self.den = denoiser
        self.compare = compare
        self.topaz = topaz
        self.threads = threads
        self.methods = methods
        self.topaz_info = None
        self.warnings = {}

    def ours(self, image, pixel_size, denoiser=None):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = (denoiser or self.den).denoise(image, pixel_size=pixel_size)
        for w in caught:
            key = str(w.message).split(" on [0,255]")[0][:60]
            self.warnings[key] = self.warnings.get(key, 0) + 1
        return out

    def run(self, noisy, truth, psd, pixel_size):
        """``{method: scores + seconds}`` and the outputs (in the noisy image's units)."""
        ref255 = to_255(truth)[0]
        scaled, a, b = percentile_255(noisy)
        sigma = noise.estimate_sigma(scaled)
        jobs = {
            "ours": lambda: self.ours(noisy, pixel_size),
            "bm3d": lambda: (bm3d_denoise(scaled, max(sigma, 0.5)) - b) / a,
            "bm3d_psd": lambda: (bm3d_psd(scaled, psd * a ** 2) - b) / a,
            "blur": lambda: (oracle_blur(scaled, ref255)[0] - b) / a,
            "noisy": lambda: noisy,
        }
        if self.topaz:
            jobs["topaz"] = lambda: self._topaz(noisy)
        if self.compare is not None:
            jobs["compare"] = lambda: self.ours(noisy, pixel_size, self.compare)
        jobs = {m: job for m, job in jobs.items() if m in self.methods}
        rows, outputs = {}, {}
        for method, job in jobs.items():
            t0 = time.perf_counter()
            out = np.asarray(job(), np.float32)
            rows[method] = {**score(out, truth, ref255), "seconds": time.perf_counter() - t0}
            outputs[method] = out
        if "bm3d" in rows:
            rows["bm3d"]["sigma_estimated_255"] = float(sigma)
        if "bm3d_psd" in rows:
            rows["bm3d_psd"]["sigma_true_255"] = float(np.sqrt(np.mean(psd)) * a)
        return rows, outputs

    def _topaz(self, image):
        out, info = run_topaz(image, self.threads)
        self.topaz_info = {k: v for k, v in info.items() if k not in ("seconds", "shape")}
        return out


# -- the two protocols -----------------------------------------------------------------------
def detector_protocol(bank, runner, args, shown):
    """Every detector x dose cell on fields ``0 .. args.fields - 1`` (the same fields in
    every cell); the rows."""
    rows = []
    for d, dname in enumerate(args.detectors):
        for k, dose in enumerate(args.doses):
            cell = d * len(args.doses) + k
            for j in range(args.fields):
                field = bank.get(j)
                member = detectors(field["pixel_size"])[dname]
                clean = bank.get(j, member.bin == 2)["clean_super" if member.bin == 2 else "clean"]
                contrast = min(float(np.std(clean)), 1.0)
                noisy, truth = det.apply_detector(clean, member, dose,
                                                  [args.seed, cell, j], contrast=contrast)
                psd = det.noise_power_spectrum(member, noisy.shape, dose)
                scores, outputs = runner.run(noisy, truth.astype(np.float64), psd,
                                             field["pixel_size"])
                for method, sc in scores.items():
                    rows.append({"detector": dname, "dose": dose, "field": j,
                                 "structure": field["structure"], "setting": field["setting"],
                                 "pixel_size": field["pixel_size"], "contrast": contrast,
                                 "method": method, **sc})
                if j == 0 and k == len(args.doses) // 2:
                    shown[dname] = (truth, outputs)
                print(f"{dname:14s} {dose:4g} e/px field {j}: " + "  ".join(
                    f"{m} {sc['psnr']:.2f}" for m, sc in scores.items()), flush=True)
    return rows


def gaussian_protocol(bank, runner, args):
    """The paper's protocol on the clean fields: ours and BM3D (true sigma), the rows."""
    rows = []
    for k in range(args.gaussian_fields):
        field = bank.get(k)
        clean = to_255(field["clean"])[0]
        for sigma in args.sigmas:
            name = f"{field['structure']}-{field['setting']}-{k}"
            noisy = noise.add_protocol_noise(clean, sigma, args.seed, name)
            # as apply --sigma runs it: the known sigma, as BM3D is given it, on [0, 255]
            jobs = {"ours": lambda: runner.den.denoise_scaled(noisy, noise_level=sigma),
                    "bm3d": lambda: bm3d_denoise(noisy, sigma), "noisy": lambda: noisy}
            if runner.compare is not None:
                jobs["compare"] = lambda: runner.compare.denoise_scaled(noisy, noise_level=sigma)
            outs = {m: job() for m, job in jobs.items() if m in runner.methods}
            for method, out in outs.items():
                rows.append({"sigma": sigma, "field": k, "structure": field["structure"],
                             "setting": field["setting"], "method": method,
                             "psnr_plain": metrics.psnr(clean, out),
                             "ssim_plain": metrics.ssim(clean, out),
                             "psnr": metrics.psnr(clean, affine_fit(out, clean)),
                             "ssim": metrics.ssim(clean, affine_fit(out, clean))})
        print(f"gaussian protocol field {k} done", flush=True)
    return rows


def summarise(rows, keys, measures):
    """Mean of each measure per ``keys`` group and method: ``{"k1|k2": {method: {...}}}``;
    ``hf_kept`` and ``hf_power`` pooled over the group (ratios of summed sums)."""
    groups = {}
    for r in rows:
        groups.setdefault(("|".join(f"{r[k]:g}" if isinstance(r[k], float) else str(r[k])
                                    for k in keys), r["method"]), []).append(r)
    out = {}
    for (key, method), rs in groups.items():
        entry = {m: float(np.mean([r[m] for r in rs])) for m in measures}
        if "hf_truth" in rs[0]:
            truth = sum(r["hf_truth"] for r in rs)
            entry["hf_kept"] = sum(r["hf_cross"] for r in rs) / truth
            entry["hf_power"] = sum(r["hf_output"] for r in rs) / truth
        out.setdefault(key, {})[method] = {**entry, "n": len(rs)}
    return out


def print_table(summary, methods, measure, title, fmt="{:.2f}"):
    print(f"\n{title}")
    print("| cell | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for key, by in summary.items():
        print(f"| {key.replace('|', ' @ ')} | " + " | ".join(
            fmt.format(by[m][measure]) if m in by else "not run" for m in methods) + " |")


def figure(shown, path):
    """Per detector (first field at the middle dose): truth, noisy, ours, BM3D-psd, Topaz."""
    from cryoem_denoise.evaluation.figures import _matplotlib, contrast_limits, save_figure

    plt = _matplotlib()
    cols = ["truth", "noisy", "ours", "bm3d_psd", "topaz"]
    fig, axes = plt.subplots(len(shown), len(cols), figsize=(2.6 * len(cols), 2.6 * len(shown)),
                             squeeze=False)
    for i, (dname, (truth, outputs)) in enumerate(shown.items()):
        ref255 = to_255(truth)[0]
        lo, hi = contrast_limits(ref255)
        for j, col in enumerate(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if col != "truth" and col not in outputs:
                ax.set_title(f"{col}: not run", fontsize=8)
                continue
            img = ref255 if col == "truth" else affine_fit(outputs[col], ref255)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            label = f"{dname}\ntruth" if col == "truth" else \
                f"{col} {metrics.psnr(ref255, img):.1f} dB"
            ax.set_title(label, fontsize=8)
    fig.suptitle("Known truth (cryoJAX fields, held-out structures): outputs fitted to the "
                 "noise-free detector image", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True, dpi=80)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="model folder (default: the shipped one)")
    ap.add_argument("--compare", default=None, metavar="DIR",
                    help="a second model folder, run beside --model as method 'compare' "
                         "(e.g. a model under selection, or the one it would replace)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                    help="methods to run (default: all; 'compare' needs --compare)")
    ap.add_argument("--quick", action="store_true",
                    help="about a minute: one 128² field, three detectors, σ 25 and 80, "
                         "no Topaz")
    ap.add_argument("--side", type=int, default=256, help="field side in pixels")
    ap.add_argument("--fields", type=int, default=3, help="fields per detector x dose cell")
    ap.add_argument("--gaussian-fields", type=int, default=3, help="fields for the σ protocol")
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    ap.add_argument("--doses", nargs="+", type=float, default=list(DOSES))
    ap.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS))
    ap.add_argument("--no-topaz", action="store_true", help="skip Topaz even if installed")
    ap.add_argument("--threads", type=int, default=2, help="Topaz's PyTorch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", default=None,
                    help="results/RESULT.json and .png (default: known_truth, with --quick "
                         "known_truth_quick)")
    args = ap.parse_args(argv)
    if args.quick:
        args.side, args.fields, args.gaussian_fields, args.no_topaz = 128, 1, 1, True
        args.detectors = [d for d in args.detectors if d in QUICK_DETECTORS]
        args.sigmas = [s for s in args.sigmas if s in (25.0, 80.0)] or args.sigmas
    args.result = args.result or ("known_truth_quick" if args.quick else "known_truth")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    names = list(datasets.HELDOUT_STRUCTURES)
    check_heldout(names)
    paths = datasets.fetch(names)
    sim = CryojaxFields({n: paths[n] for n in names})
    bank = FieldBank(sim, names, args.side, args.seed)
    print(f"cryoJAX {sim.version}: {', '.join(names)} loaded in "
          f"{time.perf_counter() - started:.0f} s", flush=True)

    topaz = None if args.no_topaz else topaz_status()
    if args.no_topaz:
        topaz = "not run: --no-topaz" + (" (--quick)" if args.quick else "")
    compare = None if args.compare is None else Denoiser.load(args.compare)
    runner = Runner(Denoiser.load(args.model), topaz is None, args.threads, args.methods,
                    compare)
    shown = {}
    rows = detector_protocol(bank, runner, args, shown)
    gauss = gaussian_protocol(bank, runner, args)

    measures = ("psnr", "ssim", "seconds")
    summary = summarise(rows, ("detector", "dose"), measures)
    gsummary = summarise(gauss, ("sigma",), ("psnr", "ssim", "psnr_plain", "ssim_plain"))
    print_table(summary, METHODS, "psnr", "PSNR (dB) after the affine fit, per detector @ dose "
                f"(e/px); Topaz {topaz or 'run'}")
    print_table(summary, METHODS, "ssim", "SSIM after the affine fit", "{:.3f}")
    print_table(summary, METHODS, "hf_kept", f"fraction of the truth's power above "
                f"{HF_CUTOFF} cycles/px kept (coherent part; the noisy column, 1 in "
                "expectation, shows the estimate's scatter)", "{:.2f}")
    print_table(summary, METHODS, "hf_power", f"output's power above {HF_CUTOFF} cycles/px "
                "over the truth's (noise included)", "{:.3g}")
    print_table(gsummary, ("ours", "compare", "bm3d", "noisy"), "psnr_plain",
                "paper's protocol (white Gaussian σ on [0, 255]): PSNR (dB), plain")

    png = RESULTS / f"{args.result}.png"
    figure(shown, png)
    def folder(name):
        return model_store.default_model_dir() if name == "default" else Path(name)

    model_dir = folder(args.model)
    structures = {n: {"description": datasets.SAMPLES[n].description,
                      "source": f"{datasets.SAMPLES[n].source.sdist_prefix} sdist, "
                                f"{datasets.SAMPLES[n].member}",
                      "licence": datasets.SAMPLES[n].source.licence, "atoms": sim.atoms[n]}
                  for n in names}
    path = save(args.result, {
        "args": vars(args), "seed": args.seed, "model": str(model_dir),
        "model_weights_sha256": datasets.sha256_of(model_dir / "generator.weights.h5"),
        "compare_model": None if args.compare is None else str(folder(args.compare)),
        "compare_weights_sha256": None if args.compare is None else
        datasets.sha256_of(folder(args.compare) / "generator.weights.h5"),
        "inference": {k: getattr(runner.den.inference, k) for k in
                      ("tile", "overlap", "precision")},
        "simulator": {"name": "cryoJAX", "version": sim.version, "licence": "LGPL-2.1",
                      "url": "https://github.com/michael-0brien/cryojax",
                      "volume": "GaussianFourierVolume (Peng 1996 five-Gaussian scattering "
                                "factors), selection 'not water'",
                      "quantity": "contrast (weak phase), ContrastTransferTheory + "
                                  "AstigmaticCTF + FourierGaussian B-factor envelope",
                      "settings": SETTINGS, "microscope": MICROSCOPE,
                      "seconds": bank.seconds},
        "structures": structures,
        "fields": [{k: v for k, v in f.items() if not k.startswith("clean")}
                   | {"contrast_std": float(np.std(f["clean"]))}
                   for _, f in sorted(bank.fields.items())],
        "detectors": {name: det.describe(m) for name, m in detectors(1.0).items()},
        "detector_note": "dose_weighted uses each field's pixel size (1.0 shown)",
        "truth": "the detector's noise-free image (apply_detector's target)",
        "scale_note": "BM3D and blur on the noisy image mapped to [0, 255] by its 0.5-99.5 "
                      "percentiles; ours on the electron counts as they are; every output "
                      "fitted affinely to the truth on [0, 255] before PSNR/SSIM",
        "topaz": topaz or "run", "topaz_info": runner.topaz_info,
        "denoiser_warnings": runner.warnings,
        "rows": rows, "summary": summary,
        "gaussian_rows": gauss, "gaussian_summary": gsummary,
        "seconds": time.perf_counter() - started, "figure": png.name})
    print(f"\nwrote {path} and {png} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
