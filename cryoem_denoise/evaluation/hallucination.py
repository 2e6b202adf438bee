"""A hallucination check: does a denoiser invent particles where there are none?

A denoiser that has learnt what particles look like may paint them into noise. PSNR does not
see it (one invented particle in a field is a small squared error); counting particle-like
blobs in the outputs of fields that hold no particle does. The check has three parts:

* :func:`empty_fields`: clean fields of ice alone (the simulator of
  :mod:`cryoem_denoise.data.simulate` with a structure of no mass: ice, CTF and scaling as
  for the training fields, no particle), on [0, 255] like every clean field;
* a blob detector at one particle radius: a difference of Gaussians
  (:func:`skimage.filters.difference_of_gaussians`, sigmas ``r / sqrt(2)`` and ``1.6`` times
  that, the relation :func:`skimage.feature.blob_dog` uses) and its local maxima
  (:func:`skimage.feature.peak_local_max`, at least a radius apart and a radius from the
  edge); particles come out dark in the simulated fields (weak-phase contrast), so by
  default the detector looks for dark blobs;
* a threshold calibrated on clean empty fields (:func:`calibrate_threshold`): the
  ``quantile`` of their blob responses (by default the largest, so that no clean empty field
  has a blob above it, times ``margin``). :func:`count_blobs` then counts, per image, the
  blobs whose response exceeds it: on the outputs of a denoiser given those fields plus
  noise, each is something the clean field did not have.

The response is on the images' own scale ([0, 255]): threshold and images must share it.
"""

import numpy as np
from skimage.feature import peak_local_max
from skimage.filters import difference_of_gaussians

from cryoem_denoise.data.simulate import PointCloud, Simulator
from cryoem_denoise.errors import ConfigError

__all__ = ["POLARITIES", "RATIO", "dog_response", "find_blobs", "blob_responses",
           "calibrate_threshold", "count_blobs", "empty_fields", "massless_structure"]

#: Which blobs the detector looks for: dark (the simulator's particles), bright, or both.
POLARITIES = ("dark", "bright", "both")
#: Ratio of the two Gaussians' widths (:func:`skimage.feature.blob_dog`'s default).
RATIO = 1.6


def _check(radius, polarity):
    if not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"the blob radius must be a positive number of pixels, got {radius}")
    if polarity not in POLARITIES:
        raise ConfigError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")


def dog_response(image, radius, polarity="dark"):
    """The difference-of-Gaussians response of ``image`` to blobs of ``radius`` pixels.

    Parameters
    ----------
    image : array_like
        2D image.
    radius : float
        Blob radius in pixels; the Gaussians' sigmas are ``radius / sqrt(2)`` and
        :data:`RATIO` times that.
    polarity : {'dark', 'bright', 'both'}
        ``'dark'``: large where the image has a dark blob; ``'bright'``: a bright one;
        ``'both'``: the magnitude.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``image``, in the image's units.
    """
    _check(radius, polarity)
    low = radius / np.sqrt(2.0)
    d = difference_of_gaussians(np.asarray(image, np.float64), low, RATIO * low)
    if polarity == "dark":
        return -d
    return d if polarity == "bright" else np.abs(d)


def find_blobs(image, threshold, radius, polarity="dark"):
    """Centres ``(k, 2)`` (row, column) of the blobs whose response exceeds ``threshold``.

    Blobs are the local maxima of :func:`dog_response`, at least ``radius`` pixels apart
    and at least ``radius`` pixels from the edge.
    """
    response = dog_response(image, radius, polarity)
    r = max(1, round(radius))
    peaks = peak_local_max(response, min_distance=r, exclude_border=r)
    return peaks[response[tuple(peaks.T)] > threshold] if len(peaks) else peaks


def blob_responses(image, radius, polarity="dark"):
    """The response at every blob of ``image`` (local maxima as in :func:`find_blobs`)."""
    response = dog_response(image, radius, polarity)
    r = max(1, round(radius))
    peaks = peak_local_max(response, min_distance=r, exclude_border=r)
    return response[tuple(peaks.T)] if len(peaks) else np.zeros(0)


def calibrate_threshold(clean_empty, radius, quantile=1.0, margin=1.0, polarity="dark"):
    """The response above which a blob counts, from clean fields without particles.

    Parameters
    ----------
    clean_empty : sequence of array_like
        Clean (noise-free) fields that hold no particle, on the scale the counted images
        will have (e.g. :func:`empty_fields`).
    radius : float
        Blob radius in pixels.
    quantile : float
        In (0, 1]: the quantile of the clean fields' blob responses (1: the largest, so no
        clean field has a blob above the threshold).
    margin : float
        The quantile is multiplied by this (>= 1 leaves room for a denoiser's harmless
        residue).
    polarity : {'dark', 'bright', 'both'}

    Returns
    -------
    float
        A deterministic function of the fields and the settings.

    Raises
    ------
    ConfigError
        No field, a quantile outside (0, 1], a margin that is not positive, a bad radius
        or polarity, or fields with no blob at all to calibrate on.
    """
    if not 0 < quantile <= 1:
        raise ConfigError(f"quantile must be in (0, 1], got {quantile}")
    if not margin > 0:
        raise ConfigError(f"margin must be positive, got {margin}")
    if len(clean_empty) == 0:
        raise ConfigError("no clean empty field to calibrate the blob threshold on")
    values = np.concatenate([blob_responses(f, radius, polarity) for f in clean_empty])
    if not len(values):
        raise ConfigError("the clean empty fields have no local maximum to calibrate on "
                          "(fields smaller than three blob radii?)")
    return float(np.quantile(values, quantile) * margin)


def count_blobs(images, threshold, radius, polarity="dark"):
    """Number of blobs above ``threshold`` in each image (:func:`find_blobs`).

    Parameters
    ----------
    images : array_like or sequence of array_like
        One 2D image or several.
    threshold : float
        From :func:`calibrate_threshold`, on the images' scale.
    radius : float
        Blob radius in pixels.
    polarity : {'dark', 'bright', 'both'}

    Returns
    -------
    numpy.ndarray
        int64 counts, one per image (shape ``()`` for one image).
    """
    arr = images if isinstance(images, (list, tuple)) else np.asarray(images)
    if not isinstance(arr, (list, tuple)) and arr.ndim == 2:
        return np.array(len(find_blobs(arr, threshold, radius, polarity)), np.int64)
    return np.array([len(find_blobs(im, threshold, radius, polarity)) for im in arr], np.int64)


def massless_structure(radius_a=50.0):
    """A :class:`~cryoem_denoise.data.simulate.PointCloud` of ``radius_a`` Å and no mass:
    the simulator places, turns and projects it as a particle, and it adds nothing."""
    xyz = np.array([[radius_a, 0.0, 0.0], [-radius_a, 0.0, 0.0]])
    return PointCloud(xyz, np.zeros(2), "empty")


def empty_fields(n, cfg, seed=0):
    """``n`` clean fields of ice alone, on [0, 255], and the settings each was drawn with.

    The training simulator (:class:`~cryoem_denoise.data.simulate.Simulator`) with a
    structure of no mass (:func:`massless_structure`): smooth random ice, the CTF of a
    drawn defocus, and the field scaled to [0, 255] by its own minimum and maximum, as
    every clean field is. With nothing else in it, the ice fills the range.

    Parameters
    ----------
    n : int
    cfg : SimulationConfig
        Field size, pixel size, defocus, ice and the rest (values or ranges); ``particles``
        is ignored. Its ice amplitude must be above 0 (no ice: a constant field).
    seed : int

    Returns
    -------
    fields : numpy.ndarray
        float32 ``(n, field, field)``.
    params : list of dict
        Each field's drawn settings (``particles`` is 0).

    Raises
    ------
    ConfigError
        An invalid config, or one that allows an ice amplitude of 0.
    """
    if cfg.range_of("ice")[0] <= 0:
        raise ConfigError(f"empty fields need ice above 0 (an empty field of no ice is "
                          f"constant), got {cfg.ice}")
    fields, params = Simulator(massless_structure(), cfg).fields(n, seed)
    return fields, [{**p, "particles": 0, "particles_drawn": 0} for p in params]
