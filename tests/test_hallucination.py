"""The hallucination check: blob detector, threshold on clean empty fields, empty fields."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryoem_denoise.config import SimulationConfig
from cryoem_denoise.data.noise import add_protocol_noise
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.evaluation import hallucination as h

RADIUS = 6.0


def _empty(n=3, seed=5):
    # ice with texture at the blob scale (correlation length 100 Å = 50 px)
    cfg = SimulationConfig(field=128, pixel_size=2.0, ice=0.3, ice_length=100.0)
    return h.empty_fields(n, cfg, seed)[0]


def test_synthetic_blobs_are_counted_where_they_are():
    y, x = np.mgrid[0:128, 0:128]
    centres = [(25, 30), (30, 95), (64, 64), (100, 25), (98, 100)]
    image = np.full((128, 128), 128.0)
    s = RADIUS / np.sqrt(2)
    for cy, cx in centres:  # dark particles, as the simulator makes them
        image -= 60 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    ice = gaussian_filter(np.random.default_rng(0).normal(size=(128, 128)), 6)
    background = 128 + 4 * ice / ice.std()
    threshold = h.calibrate_threshold([background], RADIUS)
    found = h.find_blobs(image, threshold, RADIUS)
    assert int(h.count_blobs(image, threshold, RADIUS)) == len(centres) == len(found)
    for cy, cx in centres:
        assert np.hypot(*(found - [cy, cx]).T).min() <= 1.5
    # bright blobs are not particles here, unless asked for
    assert int(h.count_blobs(255 - image, threshold, RADIUS)) == 0
    assert int(h.count_blobs(255 - image, threshold, RADIUS, polarity="bright")) == 5
    assert h.count_blobs([image, background], threshold, RADIUS).tolist() == [5, 0]


def test_blurred_noisy_empty_fields_have_no_particles():
    clean = _empty()
    threshold = h.calibrate_threshold(clean, RADIUS)
    assert h.count_blobs(clean, threshold, RADIUS).tolist() == [0, 0, 0]  # by construction
    noisy = [add_protocol_noise(c, 25.0, 0, f"empty-{i}") for i, c in enumerate(clean)]
    blurred = [gaussian_filter(n, 2.0) for n in noisy]
    assert h.count_blobs(blurred, threshold, RADIUS).sum() <= 1
    # a denoiser that paints one particle into each field fails
    y, x = np.mgrid[0:128, 0:128]
    s = RADIUS / np.sqrt(2)
    painted = [b - 120 * np.exp(-((y - 60) ** 2 + (x - 70) ** 2) / (2 * s * s)) for b in blurred]
    assert (h.count_blobs(painted, threshold, RADIUS) >= 1).all()


def test_threshold_and_empty_fields_are_deterministic():
    a, b = _empty(seed=5), _empty(seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _empty(seed=6))
    assert a.dtype == np.float32 and a.min() == 0 and a.max() == pytest.approx(255)
    t1, t2 = h.calibrate_threshold(a, RADIUS), h.calibrate_threshold(b, RADIUS)
    assert t1 == t2 > 0
    assert h.calibrate_threshold(a, RADIUS, quantile=0.9) <= t1
    assert h.calibrate_threshold(a, RADIUS, margin=1.5) == pytest.approx(1.5 * t1)


def test_bad_settings_are_refused():
    field = _empty(1)[0]
    with pytest.raises(ConfigError, match="radius"):
        h.dog_response(field, 0)
    with pytest.raises(ConfigError, match="polarity"):
        h.dog_response(field, 3, polarity="grey")
    with pytest.raises(ConfigError, match="quantile"):
        h.calibrate_threshold([field], 3, quantile=0)
    with pytest.raises(ConfigError, match="no clean empty field"):
        h.calibrate_threshold([], 3)
    with pytest.raises(ConfigError, match="ice"):
        h.empty_fields(1, SimulationConfig(field=64, ice=0.0))
