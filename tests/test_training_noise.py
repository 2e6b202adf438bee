"""Training crops shaped as real detectors deliver them: contrast and whitened transfers."""

import numpy as np
import pytest

from cryoem_denoise.config import tiny_config
from cryoem_denoise.data import detector, pipeline, training_noise
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.inference.spectrum import estimate_noise_spectrum


def _detector_config(**data):
    cfg = tiny_config(batch_size=4)
    cfg.data.noise = "detector"
    cfg.data.contrast = "0.25:1"
    cfg.data.sigma = "20"
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg.validate()


def test_whitened_transfer_is_mtf_times_what_apply_measures():
    """The bank's whitening is the filter ``apply`` computes from a measured spectrum."""
    member = detector.DoseWeighted(pixel_size=1.5, frames=30)
    shape, dose = (512, 512), 40 * 1.5 ** 2
    rng = np.random.default_rng(0)
    # noise alone, coloured by the dose-weighted member's noise spectrum
    nps = detector.noise_power_spectrum(member, (1024, 1024), dose)
    images = [np.fft.ifft2(np.fft.fft2(rng.standard_normal((1024, 1024))) * np.sqrt(nps)).real
              for _ in range(2)]
    measured = estimate_noise_spectrum(images).whitening(shape)
    ky, kx = detector.frequencies(shape, real=True)
    mtf = member.mtf(ky, kx, dose)
    expected = detector.whitened_transfer(member, shape, dose) / mtf
    band = (np.hypot(ky, kx) > 0.12) & (np.hypot(ky, kx) < 0.48)
    np.testing.assert_allclose(measured[band], expected[band], rtol=0.1)
    # white members pass everything; every member passes zero frequency whole
    np.testing.assert_allclose(detector.whitened_transfer(detector.White(), shape), 1.0)
    assert detector.whitened_transfer(detector.Counting(), shape)[0, 0] == pytest.approx(1.0)


def test_bank_is_a_pure_function_of_the_config():
    cfg = _detector_config()
    bank = training_noise.transfer_bank(cfg)
    side = cfg.model.tile + 2 * training_noise.PAD
    assert bank.shape == (training_noise.BANK_SIZE, side, side // 2 + 1)
    np.testing.assert_array_equal(bank, training_noise.transfer_bank(_detector_config()))
    assert np.all(bank[:, 0, 0] <= 1.0 + 1e-6) and np.all(bank >= 0)  # 0: Fourier-cropped Nyquist
    # the family spreads: white members, and members that damp Nyquist to a fraction
    nyquist = bank[:, 0, -1]
    assert np.isclose(nyquist, 1.0).any() and (nyquist < 0.6).any()
    cfg.data.noise = "white"
    assert training_noise.transfer_bank(cfg) is None
    only = _detector_config(detectors="white")
    np.testing.assert_allclose(training_noise.transfer_bank(only), 1.0)


def test_shape_signal_contrast_and_backends_agree():
    rng = np.random.default_rng(1)
    crops = rng.normal(120, 30, (3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(training_noise.shape_signal(crops, [1, 1, 1], None), crops,
                               atol=1e-4)
    half = training_noise.shape_signal(crops, [0.5, 0.5, 0.5], None)
    np.testing.assert_allclose(half.mean(axis=(1, 2)), crops.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(half.std(axis=(1, 2)), 0.5 * crops.std(axis=(1, 2)), rtol=1e-4)
    bank = training_noise.transfer_bank(_detector_config())
    transfers = bank[[0, 4, 5]]
    factors = [1.0, 0.6, 0.3]
    reference = training_noise.shape_signal(crops, factors, transfers)
    assert reference.shape == crops.shape
    tf = pytest.importorskip("tensorflow")
    out = training_noise.shape_signal_tf(tf.constant(crops[..., None]), tf.constant(factors),
                                         tf.constant(transfers)).numpy()[..., 0]
    np.testing.assert_allclose(out, reference, atol=1e-3)
    jnp = pytest.importorskip("jax.numpy")
    out = np.asarray(training_noise.shape_signal_jax(
        jnp.asarray(crops[..., None]), jnp.asarray(factors), jnp.asarray(transfers)))[..., 0]
    np.testing.assert_allclose(out, reference, atol=1e-3)


def _check_batches(noisy, clean, unshaped, sigma):
    """Shaped targets keep each crop's mean, lose contrast, and carry noise of ``sigma``."""
    noisy, clean, unshaped = (np.asarray(a)[..., 0] for a in (noisy, clean, unshaped))
    np.testing.assert_allclose(clean.mean(axis=(1, 2)), unshaped.mean(axis=(1, 2)), atol=0.5)
    ratio = clean.std(axis=(1, 2)) / unshaped.std(axis=(1, 2))
    assert np.all(ratio < 1.01) and np.all(ratio > 0.1) and ratio.min() < 0.9
    assert np.std(noisy - clean) == pytest.approx(sigma, rel=0.1)


def _shaped_and_plain(clean_mrc):
    """A shaping config, the same without shaping, and one packed image (64-px tiles)."""
    cfg = _detector_config()
    plain = tiny_config(batch_size=4)
    plain.data.sigma = "20"
    images = pipeline.load_images([clean_mrc("a.mrc", (200, 180))], cfg.data, 64)
    return cfg, plain, pipeline.pack(images, 64)


def test_tf_dataset_shapes_each_crop_and_resumes(clean_mrc):
    pytest.importorskip("tensorflow")
    cfg, plain, image_set = _shaped_and_plain(clean_mrc)

    def batches(c, start=0, n=2):
        it = iter(pipeline.training_dataset(image_set, c, start_element=start))
        return [tuple(t.numpy() for t in next(it)) for _ in range(n)]

    first = batches(cfg)
    np.testing.assert_array_equal(first[1][1], batches(cfg, start=4, n=1)[0][1])
    # the same crops as without shaping, shaped
    _check_batches(first[0][0], first[0][1], batches(plain, n=1)[0][1], 20)


def test_jax_batch_shapes_each_crop_and_resumes(clean_mrc):
    pytest.importorskip("jax")
    cfg, plain, image_set = _shaped_and_plain(clean_mrc)
    data = pipeline.device_images(image_set, transfers=training_noise.transfer_bank(cfg))
    noisy, clean = pipeline.jax_batch(data, cfg, 8, 4)
    again = pipeline.jax_batch(data, cfg, 8, 4)
    np.testing.assert_array_equal(np.asarray(noisy), np.asarray(again[0]))
    _, unshaped = pipeline.jax_batch(pipeline.device_images(image_set), plain, 8, 4)
    _check_batches(noisy, clean, unshaped, 20)


def test_validation_crops_are_shaped_like_training_ones(clean_mrc):
    cfg = _detector_config()
    images = pipeline.load_images([clean_mrc("v.mrc", (100, 100))], cfg.data, 64)
    noisy, clean, sigma = pipeline.validation_set(images, cfg, 0)
    again = pipeline.validation_set(images, cfg, 0)
    np.testing.assert_array_equal(clean, again[1])
    plain = tiny_config()
    plain.data.sigma = "20"
    unshaped = pipeline.validation_set(images, plain, 0)[1]
    assert not np.allclose(clean, unshaped)
    assert np.std(noisy - clean) == pytest.approx(20, rel=0.1)


def test_shaping_settings_are_checked():
    with pytest.raises(ConfigError, match="contrast"):
        _detector_config(contrast="0:1")
    with pytest.raises(ConfigError, match="contrast"):
        _detector_config(contrast="high")
    with pytest.raises(ConfigError, match="detectors"):
        _detector_config(detectors="white,film")
    with pytest.raises(ConfigError, match="noise"):
        _detector_config(noise="pink")
    with pytest.raises(ConfigError, match="own noise"):
        _detector_config(mode="noise2noise")


def test_fit_trains_on_detector_noise_and_resumes(clean_mrc, tmp_path):
    """From the command line: the settings reach the model folder, which loads and resumes."""
    from click.testing import CliRunner

    from cryoem_denoise.cli import cli
    from cryoem_denoise.config import FitConfig
    from cryoem_denoise.inference.denoiser import Denoiser

    data, out = clean_mrc("d.mrc", (160, 160)), tmp_path / "m"
    args = ["fit", "--tiny", "-q", "--out", str(out), "--checkpoint-every", "3", "--log-every",
            "3", "--validate-every", "3", "--noise", "detector", "--contrast", "0.5:1",
            "--detectors", "counting,dose_weighted"]
    result = CliRunner().invoke(cli, args + ["--steps", "3", str(data)])
    assert result.exit_code == 0, result.output
    saved = FitConfig.from_json((out / "config.json").read_text())
    assert (saved.data.noise, saved.data.contrast, saved.data.detectors) == \
        ("detector", "0.5:1", "counting,dose_weighted")
    assert Denoiser.load(out).denoise_scaled(np.full((64, 64), 100.0, np.float32),
                                             noise_level=20).shape == (64, 64)
    result = CliRunner().invoke(cli, ["fit", "--out", str(out), "--resume", "--steps", "6", "-q"])
    assert result.exit_code == 0, result.output
    changed = CliRunner().invoke(cli, ["fit", "--out", str(out), "--resume", "--steps", "9",
                                       "--contrast", "1"])
    assert changed.exit_code == 2 and "cannot resume with data.contrast" in changed.output
