"""Hot and dead pixels: found and replaced before an image is scaled for a model.

Counting detectors leave isolated pixels far above (hot) or below (dead, often 0) the rest.
Passed to a network they come out as bright or dark blobs and, through the robust scaling,
do no other harm; replaced by the median of their neighbours, they vanish. A pixel is an
outlier when it lies more than ``threshold`` robust standard deviations
(:func:`~cryoem_denoise.data.intensity.robust_stats`) from both the image median and the
median of its 5 x 5 neighbours that are not outliers themselves, and has at most three
outliers beside it there. Dark contamination, carbon edges and gold beads, larger than a
few pixels, stay.
"""

import numpy as np

from cryoem_denoise.data.intensity import robust_stats

__all__ = ["OUTLIER_THRESHOLD", "replace_outliers"]

#: Robust standard deviations beyond which an isolated pixel is replaced (Gaussian noise
#: reaches it once in 10^9 pixels).
OUTLIER_THRESHOLD = 6.0
_RADIUS = 2  # the 5 x 5 neighbourhood
#: At most this many other outliers in a pixel's 5 x 5 neighbourhood (a hot pair or cluster);
#: more make it part of a structure (a dark blob, a carbon edge), which stays.
_MAX_CLUSTER = 3
_CHUNK = 2 ** 18  # candidates handled at once (bounded memory)


def replace_outliers(image, threshold=OUTLIER_THRESHOLD):
    """Replace isolated outlier pixels of a 2D image by their neighbours' median.

    Parameters
    ----------
    image : ndarray
        2D float image; changed in place (pass a copy to keep the original).
    threshold : float
        In robust standard deviations; 0 or less: nothing is replaced.

    Returns
    -------
    int
        The number of pixels replaced.
    """
    if not threshold > 0:
        return 0
    centre, spread = robust_stats(image)
    candidates = np.abs(image - np.float32(centre)) > threshold * spread
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        return 0
    ny, nx = image.shape
    offsets = np.arange(-_RADIUS, _RADIUS + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    replaced = 0
    for start in range(0, ys.size, _CHUNK):
        y, x = ys[start:start + _CHUNK], xs[start:start + _CHUNK]
        rows, cols = y[:, None] + dy[None, :], x[:, None] + dx[None, :]
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        rows, cols = np.clip(rows, 0, ny - 1), np.clip(cols, 0, nx - 1)
        neighbours = image[rows, cols].astype(np.float64)
        flagged = candidates[rows, cols] & inside
        neighbours[flagged | ~inside] = np.nan  # outliers do not vote (nor the pixel itself)
        voters = np.isfinite(neighbours).any(axis=1)  # a neighbourhood of outliers only: left
        local = np.full(len(y), np.nan)
        local[voters] = np.nanmedian(neighbours[voters], axis=1)
        isolated = (np.isfinite(local) & (flagged.sum(axis=1) <= 1 + _MAX_CLUSTER)
                    & (np.abs(image[y, x] - local) > threshold * spread))
        image[y[isolated], x[isolated]] = local[isolated]
        replaced += int(isolated.sum())
    return replaced

