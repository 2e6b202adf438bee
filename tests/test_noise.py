import numpy as np
import pytest

from cryoem_denoise.errors import ConfigError
from cryoem_denoise.noise import SigmaSpec, add_gaussian_noise, add_gaussian_noise_tf


@pytest.mark.parametrize("text,low,high", [("40", 40, 40), (25, 25, 25), ("10:80", 10, 80),
                                           (" 5.5 : 6 ", 5.5, 6)])
def test_parse(text, low, high):
    spec = SigmaSpec.parse(text)
    assert (spec.low, spec.high) == (low, high)
    assert SigmaSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["0", "-3", "300", "80:10", "a", "1:2:3", "nan", ""])
def test_parse_rejects(text):
    with pytest.raises(ConfigError):
        SigmaSpec.parse(text)


def test_numpy_noise_is_seeded_and_has_sigma():
    clean = np.full((256, 256), 128.0, np.float32)
    a, s1 = add_gaussian_noise(clean, "40", 7)
    b, s2 = add_gaussian_noise(clean, "40", 7)
    np.testing.assert_array_equal(a, b)
    assert s1 == s2 == 40
    assert a.dtype == np.float32
    assert np.std(a - clean) == pytest.approx(40, rel=0.02)
    assert np.mean(a - clean) == pytest.approx(0, abs=0.5)
    assert a.min() < 0 or a.max() > 255  # not clipped
    c, _ = add_gaussian_noise(clean, "40", 8)
    assert not np.array_equal(a, c)


def test_range_draws_sigma_within_bounds():
    sigmas = [add_gaussian_noise(np.zeros((8, 8)), "10:80", seed)[1] for seed in range(200)]
    assert min(sigmas) >= 10 and max(sigmas) <= 80
    assert np.mean(sigmas) == pytest.approx(45, abs=4)


def test_tensorflow_noise_matches_the_numpy_definition():
    tf = pytest.importorskip("tensorflow")
    clean = tf.fill((64, 64, 64, 1), 100.0)
    noisy, sigma = add_gaussian_noise_tf(clean, "10:80", seed=(1, 2))
    again, _ = add_gaussian_noise_tf(clean, "10:80", seed=(1, 2))
    np.testing.assert_array_equal(noisy.numpy(), again.numpy())
    sigma = sigma.numpy()
    assert sigma.min() >= 10 and sigma.max() <= 80
    per_image_std = np.std((noisy - clean).numpy(), axis=(1, 2, 3))
    np.testing.assert_allclose(per_image_std, sigma, rtol=0.06)
    fixed, s = add_gaussian_noise_tf(clean[:2], 40, seed=(3, 4))
    np.testing.assert_allclose(s.numpy(), [40, 40])
