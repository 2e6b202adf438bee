"""Detector transfers (cryoem_denoise.data.detector): the simulated noise has the stated
spectrum, the transfers are consistent, and the family behaves as documented."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryoem_denoise.data import detector as det
from cryoem_denoise.data.noise import expected_counts
from cryoem_denoise.errors import ConfigError, InputError

MEMBERS = {
    "white": det.White(),
    "counting": det.Counting(blur=0.25, sharing=0.12, efficiency=0.85),
    "super_average": det.SuperResolution(det.Counting(blur=0.5, sharing=0.2), "average"),
    "super_fourier": det.SuperResolution(det.Counting(blur=0.5, sharing=0.2), "fourier"),
    "dose_weighted": det.DoseWeighted(pixel_size=1.0, frames=16),
    "dose_weighted_restored": det.DoseWeighted(pixel_size=0.8, frames=16, restore_power=True),
}
#: Empirical NPS of 48 flat 64² fields, averaged in 4 x 4 frequency blocks (768 exponential
#: draws each: 3.6 % standard error), must lie within this fraction of the closed form.
BLOCK_TOLERANCE = 0.2
#: ... and the total noise variance (all 196 608 pixels) within this fraction.
VARIANCE_TOLERANCE = 0.03


def _blocks(a, size=4):
    n, m = a.shape
    return a.reshape(n // size, size, m // size, size).mean(axis=(1, 3))


def _flat_noise(member, dose, n=48, side=64, seed=3):
    clean = np.zeros((n, side * member.bin, side * member.bin))
    noisy, target = det.apply_detector(clean, member, dose, seed)
    return noisy.astype(np.float64) - target


@pytest.mark.parametrize("name", list(MEMBERS))
def test_empirical_nps_matches_closed_form(name):
    member, dose = MEMBERS[name], 20.0
    noise = _flat_noise(member, dose)
    empirical = (np.abs(np.fft.fft2(noise)) ** 2).mean(axis=0) / noise[0].size
    expected = det.noise_power_spectrum(member, noise.shape[-2:], dose)
    assert noise.var() == pytest.approx(expected.mean(), rel=VARIANCE_TOLERANCE)
    e, t = _blocks(np.fft.fftshift(empirical)), _blocks(np.fft.fftshift(expected))
    assert np.all(np.abs(e - t) <= BLOCK_TOLERANCE * t + 1e-9)


def test_white_member_is_white():
    member, dose = det.White(), 9.0
    nps = det.noise_power_spectrum(member, (32, 48), dose)
    np.testing.assert_allclose(nps, dose)
    np.testing.assert_allclose(det.signal_transfer(member, (32, 48)), 1.0)
    noise = _flat_noise(member, dose)
    empirical = (np.abs(np.fft.fft2(noise)) ** 2).mean(axis=0) / noise[0].size
    low, high = empirical[:16, :16].mean(), empirical[16:48, 16:48].mean()
    assert high == pytest.approx(low, rel=0.05)
    # signal-independent: the same noise level on dark and bright pixels
    clean = np.tile(np.r_[np.zeros(32), np.ones(32)], (64, 1))
    noisy, target = det.apply_detector(np.stack([clean] * 8), member, dose, 0, contrast=0.5)
    resid = noisy - target
    assert resid[..., :32].std() == pytest.approx(resid[..., 32:].std(), rel=0.05)


@pytest.mark.parametrize("binning", ["average", "fourier"])
@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (3, 32, 36)])
def test_binning_halves_the_size(binning, shape):
    member = det.SuperResolution(binning=binning)
    clean = np.random.default_rng(0).random(shape)
    noisy, target = det.apply_detector(clean, member, 10.0, 1)
    half = shape[:-2] + (shape[-2] // 2, shape[-1] // 2)
    assert noisy.shape == target.shape == half
    assert noisy.dtype == target.dtype == np.float32
    # the output holds the electrons of each 2 x 2 block: a mean of the dose per output pixel
    assert target.mean() == pytest.approx(10.0, rel=1e-3)


def test_binned_members_reject_odd_fields():
    with pytest.raises(InputError, match="multiples of 2"):
        det.apply_detector(np.zeros((33, 32)), det.SuperResolution(), 5.0, 0)


@pytest.mark.parametrize("name", list(MEMBERS))
def test_seeded_and_deterministic(name):
    member = MEMBERS[name]
    side = 32 * member.bin
    clean = np.random.default_rng(1).random((side, side))
    a = det.apply_detector(clean, member, 5.0, 11)
    b = det.apply_detector(clean, member, 5.0, np.random.default_rng(11))
    c = det.apply_detector(clean, member, 5.0, 12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], c[1])  # the target has no noise
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("name", ["white", "counting", "dose_weighted", "dose_weighted_restored"])
def test_target_is_the_field_through_the_mtf(name):
    member, dose = MEMBERS[name], 30.0
    clean = np.random.default_rng(2).random((64, 64))
    _, target = det.apply_detector(clean, member, dose, 0)
    lam = expected_counts(clean, dose)
    ky, kx = det.frequencies(lam.shape, real=True)
    through = np.fft.irfft2(np.fft.rfft2(lam) * member.mtf(ky, kx, dose), s=lam.shape)
    np.testing.assert_allclose(target, through, rtol=1e-4, atol=1e-4 * dose)


def test_fourier_binning_keeps_the_spectrum_below_nyquist():
    member, dose = MEMBERS["super_fourier"], 12.0
    clean = np.random.default_rng(4).random((128, 128))
    _, target = det.apply_detector(clean, member, dose, 0)
    lam = expected_counts(clean, dose / 4)
    ky, kx = det.frequencies((64, 64))
    got = np.fft.fft2(target)
    full = np.fft.fft2(lam)
    idx = np.fft.fftfreq(64) * 64
    want = full[np.ix_(idx.astype(int), idx.astype(int))] * member.mtf(ky, kx, dose)
    np.testing.assert_allclose(got, want, atol=1e-3 * np.abs(full).max())
    tiny = 1e-6 * abs(got[0, 0])  # float32 rounding of the target
    assert np.allclose(got[32, :], 0, atol=tiny) and np.allclose(got[:, 32], 0, atol=tiny)


def test_counting_nps_is_flatter_than_mtf_squared():
    member = det.Counting(blur=0.25, sharing=0.1, efficiency=0.9)
    ky, kx = np.array([0.0, 0.0, 0.5]), np.array([0.0, 0.5, 0.5])
    nps, mtf = member.nps(ky, kx), member.mtf(ky, kx)
    assert mtf[0] == pytest.approx(1.0)
    assert np.all(nps[1:] / nps[0] > mtf[1:] ** 2)
    assert det.dqe(member, 0.0, 0.0) == pytest.approx(0.9 * 1.1 ** 2 / 1.3)


def test_dose_weighting_lowers_high_frequency_noise():
    k = np.array([0.0, 0.1, 0.25, 0.5])
    member = det.DoseWeighted(pixel_size=1.0, frames=40, detector=det.White())
    nps = member.nps(np.zeros(4), k, dose=40.0)
    assert nps[0] == pytest.approx(40.0)
    assert np.all(np.diff(nps) < 0)
    restored = det.DoseWeighted(pixel_size=1.0, frames=40, detector=det.White(), restore_power=True)
    np.testing.assert_allclose(restored.nps(np.zeros(4), k, dose=40.0), 40.0)
    # Grant & Grigorieff (2015) at 300 kV: 0.245 k^-1.665 + 2.81 e/Å²
    assert det.critical_exposure(0.25) == pytest.approx(0.245 * 0.25 ** -1.665 + 2.81)
    assert np.isinf(det.critical_exposure(0.0))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), pixel_size=st.floats(0.4, 4.0),
       dose=st.floats(0.5, 100.0))
def test_drawn_members_are_physical(seed, pixel_size, dose):
    member = det.draw_detector(seed, pixel_size)
    ky, kx = det.frequencies((16, 16))
    assert member.mtf(np.zeros(1), np.zeros(1), dose)[0] == pytest.approx(1.0)
    nps = member.nps(ky, kx, dose)
    assert np.all(nps >= 0) and member.nps(np.zeros(1), np.zeros(1), dose)[0] > 0
    assert np.all(det.dqe(member, ky, kx, dose) <= 1 + 1e-9)
    json.dumps(det.describe(member))
    assert det.describe(member)["kind"] == member.kind


@pytest.mark.parametrize("kind", det.KINDS)
def test_draw_detector_kinds(kind):
    member = det.draw_detector(0, 1.2, kinds=(kind,))
    assert member.kind == {"super_average": "super_resolution",
                           "super_fourier": "super_resolution"}.get(kind, kind)
    if member.kind == "counting":
        for name, (low, high) in det.RANGES["counting"].items():
            assert low <= getattr(member, name) <= high
    if member.kind == "dose_weighted":
        assert member.pixel_size == 1.2


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError):
        det.draw_detector(0, kinds=("cmos",))
    with pytest.raises(ConfigError):
        det.Counting(efficiency=0)
    with pytest.raises(ConfigError):
        det.SuperResolution(binning="bilinear")
    with pytest.raises(ConfigError):
        det.DoseWeighted(pixel_size=0)
    with pytest.raises(ConfigError):
        det.apply_detector(np.zeros((8, 8)), det.White(), 0.0, 0)
