"""Image-quality metrics on the paper's [0, 255] scale.

MAE, MSE, RMSE (the paper's "PMSE": its Table 1 has PMSE² = MSE), PSNR with peak 255
(Eq. 2, n = 8 bits) and SSIM (Eq. 4). SSIM follows Wang et al. (2004), the paper's
reference [8]: an 11×11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
covariances (``gaussian=False`` gives scikit-image's default 7×7 uniform window instead).
"""

import numpy as np
from skimage.metrics import structural_similarity

DATA_RANGE = 255.0
#: Metric names in the order of the paper's Table 1 (RMSE is its "PMSE").
NAMES = ("mae", "mse", "rmse", "psnr", "ssim")
#: Whether a higher value is better, per metric.
HIGHER_IS_BETTER = {"mae": False, "mse": False, "rmse": False, "psnr": True, "ssim": True}


def _pair(reference, image):
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    if ref.shape != img.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, image {img.shape}")
    return ref, img


def mae(reference, image):
    """Mean absolute error."""
    ref, img = _pair(reference, image)
    return float(np.mean(np.abs(ref - img)))


def mse(reference, image):
    """Mean squared error (Eq. 3)."""
    ref, img = _pair(reference, image)
    return float(np.mean(np.square(ref - img)))


def rmse(reference, image):
    """Root mean squared error (the paper's PMSE)."""
    return float(np.sqrt(mse(reference, image)))


def psnr(reference, image, data_range=DATA_RANGE):
    """Peak signal-to-noise ratio in dB (Eq. 2); ``inf`` for identical images."""
    err = mse(reference, image)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / err))


def ssim(reference, image, data_range=DATA_RANGE, gaussian=True):
    """Structural similarity (Eq. 4), mean over the image.

    Images smaller than the 11x11 window use a uniform window as large as fits (odd, >= 3).
    """
    ref, img = _pair(reference, image)
    side = min(ref.shape)
    if side < 11:
        win = max(3, side if side % 2 else side - 1)
        return float(structural_similarity(ref, img, data_range=data_range, win_size=win))
    if gaussian:
        return float(structural_similarity(ref, img, data_range=data_range, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    return float(structural_similarity(ref, img, data_range=data_range))


def all_metrics(reference, image):
    """Every metric of :data:`NAMES` as a dict."""
    return {"mae": mae(reference, image), "mse": mse(reference, image),
            "rmse": rmse(reference, image), "psnr": psnr(reference, image),
            "ssim": ssim(reference, image)}
