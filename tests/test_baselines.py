import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryoem_denoise.evaluation import baselines

from cryoem_denoise.evaluation import metrics


@pytest.fixture
def clean():
    rng = np.random.default_rng(0)
    img = gaussian_filter(rng.normal(0, 1, (64, 64)), 2.5)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 25
    return img.astype(np.float32)


@pytest.mark.slow
def test_ksvd_recovers_a_known_dictionary():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(16, 36))
    true /= np.linalg.norm(true, axis=1, keepdims=True)
    codes = np.zeros((1500, 16))
    for row in codes:
        row[rng.choice(16, 3, replace=False)] = rng.normal(0, 1, 3) + np.sign(rng.normal(size=3))
    signals = codes @ true
    cfg = baselines.KSVDConfig(patch=6, atoms=16, iterations=50, train_sparsity=3)
    learned = baselines.learn_dictionary(signals, cfg, np.random.default_rng(2))
    match = np.abs(learned @ true.T).max(axis=0)
    assert (match > 0.98).sum() >= 14  # nearly every atom found again (up to sign)


def test_overcomplete_dct_is_a_separable_spanning_dictionary():
    """What K-SVD's start needs: atoms that span every 8x8 patch, a flat (DC) atom, the rest
    zero-mean, each atom separable (an outer product of two 1D cosines)."""
    d = baselines.overcomplete_dct(8, 128)
    assert d.shape == (128, 64)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    assert np.linalg.matrix_rank(d) == 64          # overcomplete: any patch is a combination
    np.testing.assert_allclose(d[0], 1 / 8)        # the DC atom
    np.testing.assert_allclose(d[1:].sum(axis=1), 0, atol=1e-9)
    assert all(np.linalg.matrix_rank(a.reshape(8, 8), tol=1e-9) == 1 for a in d)
    # an oscillation along x only is one atom: the DCT basis, not random vectors
    patch = np.tile(d[1].reshape(8, 8)[:1], (8, 1)).ravel()
    assert np.abs(d @ patch / np.linalg.norm(patch)).max() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("method", ["bm3d", "ksvd"])
def test_denoisers_improve_psnr(clean, method):
    noisy = clean + np.random.default_rng(3).normal(0, 30, clean.shape).astype(np.float32)
    out = baselines.ClassicalMethod(method, baselines.KSVDConfig(atoms=64, train_patches=800,
                                                                 iterations=3))(noisy, 30.0)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert metrics.psnr(clean, out) > metrics.psnr(clean, noisy) + 3


def test_gaussian_width_is_chosen_on_validation(clean):
    rng = np.random.default_rng(4)
    low = clean + rng.normal(0, 5, clean.shape)
    high = clean + rng.normal(0, 60, clean.shape)
    w_low, scores = baselines.choose_gaussian_width([clean], [low])
    w_high, _ = baselines.choose_gaussian_width([clean], [high])
    assert w_high > w_low and scores[w_low] == max(scores.values())
    method = baselines.ClassicalMethod("gaussian", gaussian_widths={60.0: w_high})
    assert metrics.psnr(clean, method(high, 60.0)) > metrics.psnr(clean, high)
    with pytest.raises(Exception, match="no Gaussian width"):
        method(high, 10.0)
    np.testing.assert_array_equal(baselines.ClassicalMethod("noisy")(high, 60.0), high.astype(np.float32))
