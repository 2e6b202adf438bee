"""The paper's comparison methods, each behind one call: ``method(noisy, sigma) -> denoised``.

Images are on the [0, 255] scale and sigma is the true noise level on that scale.

BM3D
    the ``bm3d`` package (Mäkinen, Azzari, Foi), default profile, with the true sigma
    (``sigma_psd = sigma / 255`` on the [0, 1] scale it works on). Its licence allows
    non-commercial use only.
K-SVD
    Elad & Aharon (2006) image denoising: a dictionary of ``atoms`` 8x8 atoms, started from
    an overcomplete DCT and trained on ``train_patches`` random mean-removed patches of the
    noisy image by K-SVD (``dictlearn``: OMP sparse coding with ``train_sparsity`` atoms,
    then a rank-1 SVD update of each atom and its coefficients); every patch on a
    ``stride`` grid is then coded by OMP until its residual falls below
    ``(C sigma)^2 * patch^2`` (C = 1.15), and the image is the weighted average of the noisy
    image (weight ``lam / sigma``) and the overlapping patch estimates. Its many small
    matrix products and SVDs run with single-threaded BLAS: a threaded BLAS spends more
    time synchronising than computing on 64 x n matrices (measured 74 s against 2.4 s for
    one dictionary on 2 busy cores).
Gaussian blur
    ``scipy.ndimage.gaussian_filter`` with a width chosen per noise level on a validation
    split (:func:`choose_gaussian_width`).
noisy
    the noisy input itself (the "Noise image" column of the paper's Table 1).
"""


import bm3d
import dictlearn
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter
from threadpoolctl import threadpool_limits

from cryoem_denoise.config import KSVDConfig  # noqa: F401  (part of this module's interface)
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.evaluation.metrics import psnr

CLASSICAL = ("bm3d", "ksvd", "gaussian", "noisy")
#: Gaussian widths (pixels) tried per noise level.
GAUSSIAN_WIDTHS = tuple(np.round(np.arange(0.5, 4.01, 0.25), 2))


def bm3d_denoise(noisy, sigma):
    """BM3D with the true sigma (default profile)."""

    out = bm3d.bm3d(np.asarray(noisy, np.float64) / 255.0, sigma_psd=float(sigma) / 255.0)
    return (np.asarray(out) * 255.0).astype(np.float32)


def gaussian_denoise(noisy, sigma, width):
    """Gaussian blur of standard deviation ``width`` pixels (``sigma`` is not used)."""

    return gaussian_filter(np.asarray(noisy, np.float32), float(width), mode="reflect")


def overcomplete_dct(patch, atoms):
    """The separable overcomplete DCT dictionary, ``(atoms, patch * patch)``, unit rows."""
    k = int(np.ceil(np.sqrt(atoms)))
    d1 = np.cos(np.outer(np.arange(patch), np.arange(k)) * np.pi / k)
    d1[:, 1:] -= d1[:, 1:].mean(axis=0)
    d1 /= np.linalg.norm(d1, axis=0)
    d2 = np.kron(d1, d1).T[:atoms]
    return d2 / np.linalg.norm(d2, axis=1, keepdims=True)


def _patches(image, patch, stride):
    h, w = image.shape
    ys = np.unique(np.r_[np.arange(0, h - patch + 1, stride), h - patch])
    xs = np.unique(np.r_[np.arange(0, w - patch + 1, stride), w - patch])
    view = sliding_window_view(image, (patch, patch))
    return view[np.ix_(ys, xs)].reshape(-1, patch * patch), ys, xs


def learn_dictionary(signals, cfg, rng):
    """K-SVD on ``signals`` (n, patch^2), from the overcomplete DCT; returns (atoms, patch^2)."""

    learner = dictlearn.DictionaryLearning(
        n_components=cfg.atoms, fit_algorithm="ksvd", transform_algorithm="omp",
        n_nonzero_coefs=cfg.train_sparsity, max_iter=cfg.iterations,
        dict_init=overcomplete_dct(cfg.patch, cfg.atoms), random_state=int(rng.integers(2 ** 31)))
    learner.fit(signals)
    return learner.components_


def ksvd_denoise(noisy, sigma, cfg=None):
    """K-SVD denoising of one image (see the module docstring)."""

    with threadpool_limits(limits=1, user_api="blas"):
        return _ksvd_denoise(noisy, sigma, cfg or KSVDConfig())


def _ksvd_denoise(noisy, sigma, cfg):
    img = np.asarray(noisy, np.float64)
    if min(img.shape) < cfg.patch:
        raise ConfigError(f"image smaller than the K-SVD patch ({cfg.patch})")
    rng = np.random.default_rng(cfg.seed)
    p = cfg.patch
    all_patches, _, _ = _patches(img, p, 1)
    sample = all_patches[rng.choice(len(all_patches), min(cfg.train_patches, len(all_patches)),
                                     replace=False)]
    sample = sample - sample.mean(axis=1, keepdims=True)
    dictionary = learn_dictionary(sample, cfg, rng)
    patches, ys, xs = _patches(img, p, cfg.stride)
    means = patches.mean(axis=1, keepdims=True)
    tol = (cfg.error_factor * sigma) ** 2 * p * p
    codes = dictlearn.sparse_encode(patches - means, dictionary, algorithm="batch_omp", tol=tol)
    estimates = (np.asarray(codes) @ dictionary + means).reshape(len(ys), len(xs), p, p)
    weight = cfg.lam / sigma
    acc = weight * img.copy()
    count = np.full(img.shape, weight)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            acc[y:y + p, x:x + p] += estimates[i, j]
            count[y:y + p, x:x + p] += 1.0
    return (acc / count).astype(np.float32)


def choose_gaussian_width(cleans, noisies, widths=GAUSSIAN_WIDTHS):
    """The blur width with the best mean PSNR on validation pairs; ``(width, psnr_by_width)``."""
    scores = {float(w): float(np.mean([psnr(c, gaussian_denoise(n, None, w))
                                       for c, n in zip(cleans, noisies)])) for w in widths}
    return max(scores, key=scores.get), scores


class ClassicalMethod:
    """A picklable ``method(noisy, sigma)`` for the classical baselines (for process pools)."""

    def __init__(self, name, ksvd=None, gaussian_widths=None):
        if name not in CLASSICAL:
            raise ConfigError(f"unknown method {name!r}")
        self.name = name
        self.ksvd = ksvd or KSVDConfig()
        self.gaussian_widths = gaussian_widths or {}

    def __call__(self, noisy, sigma):
        if self.name == "bm3d":
            return bm3d_denoise(noisy, sigma)
        if self.name == "ksvd":
            return ksvd_denoise(noisy, sigma, self.ksvd)
        if self.name == "gaussian":
            if sigma not in self.gaussian_widths:
                raise ConfigError(f"no Gaussian width chosen for sigma {sigma:g}")
            return gaussian_denoise(noisy, sigma, self.gaussian_widths[sigma])
        return np.asarray(noisy, np.float32).copy()
