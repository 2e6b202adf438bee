"""The noise-level input (``sigma_map``), how sigma is drawn, and weighting crops by 1/sigma^2."""

import subprocess
import sys

import numpy as np
import pytest

from cryoem_denoise.data import pipeline
from cryoem_denoise.config import FitConfig, PRESETS, tiny_config
from cryoem_denoise.errors import ConfigError
from cryoem_denoise.data.noise import SigmaSpec, sigma_from_uniform

pytestmark = pytest.mark.backends


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cryoem_denoise", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sigma_map_model(tmp_path_factory):
    """A tiny model with a noise-level input, trained briefly."""
    from scipy.ndimage import gaussian_filter

    from cryoem_denoise import training

    from cryoem_denoise.io import mrc

    folder = tmp_path_factory.mktemp("sigma_map")
    rng = np.random.default_rng(3)
    mrc.write_mrc(folder / "train.mrc",
                  gaussian_filter(rng.normal(0, 1, (192, 192)), 4).astype(np.float32))
    cfg = tiny_config(steps=20, batch_size=2, log_every=10, validate_every=20,
                      checkpoint_every=20, loss_weighting="inverse_variance",
                      adversarial=False, gray_reduction="mean")
    cfg.model.sigma_map = True
    cfg.model.residual = True
    cfg.model.upsample = "resize"
    cfg.data.sigma = "20:40"
    cfg.data.sigma_draw = "log_uniform"
    training.fit(cfg.validate(), [folder / "train.mrc"], folder / "model")
    return folder / "model"


def test_log_uniform_draw_spreads_sigma_over_its_logarithm():
    spec = SigmaSpec.parse("10:80")
    u = np.linspace(0, 1, 1001)
    s = sigma_from_uniform(spec, u, "log_uniform")
    assert s[0] == pytest.approx(10) and s[-1] == pytest.approx(80)
    assert np.median(s) == pytest.approx(np.sqrt(10 * 80), rel=1e-3)  # geometric mean
    assert np.median(sigma_from_uniform(spec, u)) == pytest.approx(45)
    with pytest.raises(ConfigError):
        sigma_from_uniform(spec, u, "gamma")


def test_crop_weights_are_inverse_noise_variance_with_mean_one():
    from keras import ops

    from cryoem_denoise.model import losses

    rng = np.random.default_rng(0)
    clean = rng.uniform(-0.5, 0.5, (3, 32, 32, 1)).astype(np.float32)
    sig = np.array([0.05, 0.1, 0.2], np.float32)
    noisy = clean + sig[:, None, None, None] * rng.standard_normal(clean.shape).astype(np.float32)
    w = ops.convert_to_numpy(losses.crop_weights(noisy, clean, "inverse_variance"))
    assert w.mean() == pytest.approx(1.0, rel=1e-5)
    assert w[0] / w[2] == pytest.approx(16, rel=0.1)
    assert losses.crop_weights(noisy, clean, "none") is None
    w_sigma = ops.convert_to_numpy(losses.crop_weights(noisy, clean, "inverse_sigma"))
    assert w_sigma.mean() == pytest.approx(1.0, rel=1e-5)
    assert w_sigma[0] / w_sigma[2] == pytest.approx(4, rel=0.1)
    # a noise-level channel beside the image does not count as noise
    with_map = np.concatenate([noisy, np.full_like(noisy, 0.7)], axis=-1)
    w2 = ops.convert_to_numpy(losses.crop_weights(with_map, clean, "inverse_variance"))
    np.testing.assert_allclose(w, w2, rtol=1e-6)


def test_with_noise_level_appends_a_constant_plane():
    noisy = np.zeros((2, 8, 8), np.float32)
    x = pipeline.with_noise_level(noisy, [10, 30])
    assert x.shape == (2, 8, 8, 2)
    assert (x[0, ..., 1] == 10).all() and (x[1, ..., 1] == 30).all()
    assert (x[..., 0] == 0).all()


def _halves(make_mrc, sigma_file, seed=0, shape=(192, 192)):
    """Two noisy halves of one smooth field (file units; noise std ``sigma_file``)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(0, 1, shape), 3).astype(np.float32) * 20
    a = make_mrc((field + rng.normal(0, sigma_file, shape)).astype(np.float32), f"a{seed}.mrc")
    b = make_mrc((field + rng.normal(0, sigma_file, shape)).astype(np.float32), f"b{seed}.mrc")
    return a, b


def test_pairs_carry_their_measured_sigma(make_mrc):
    """Without drawn noise, each pair carries its input's sigma, measured as apply does."""
    from cryoem_denoise.data.noise import estimate_noise_level

    cfg = tiny_config()
    cfg.model.sigma_map = True
    for mode in ("noise2noise", "self_supervised", "pairs"):
        cfg.data.mode = mode
        cfg.validate()  # a noise-level input trains in every mode
    a, b = _halves(make_mrc, 1.0)
    cfg.data.mode = "noise2noise"
    (im,) = pipeline.load_images([a], cfg.data, 64, noisy_paths=[b])
    expected = 0.5 * (estimate_noise_level(im.noisy) + estimate_noise_level(im.clean))
    assert im.sigma == pytest.approx(expected)
    # the scaled halves differ by noise of std sqrt(2) sigma: the estimate is close to it
    assert im.sigma == pytest.approx(np.std(im.noisy - im.clean) / np.sqrt(2), rel=0.1)
    cfg.data.mode = "self_supervised"
    subs = pipeline.load_images([a], cfg.data, 64)
    assert len({x.sigma for x in subs}) == 1 and subs[0].sigma > 0
    cfg.data.mode = "pairs"
    (im,) = pipeline.load_images([a], cfg.data, 64, noisy_paths=[b])
    assert im.sigma == pytest.approx(float(np.std(im.noisy.astype(np.float64) - im.clean)))
    train, val = pipeline.split_validation([im], 0.3, 64)
    assert train[0].sigma == val[0].sigma == im.sigma
    packed = pipeline.pack(train, 64)
    np.testing.assert_allclose(packed.sigmas, [im.sigma])
    noisy, _, sigma = pipeline.validation_set(val, cfg, 0)
    np.testing.assert_allclose(sigma, im.sigma)


def test_noise2noise_halves_share_one_scaling(make_mrc):
    """Both halves by the affine of the target half, also with a noisy-input scaling of its
    own (the shipped model's robust one): input and target in the same units."""
    from cryoem_denoise.data.intensity import to_unit255
    from cryoem_denoise.io.image_io import read_sections

    a, b = _halves(make_mrc, 2.0)
    cfg = tiny_config()
    cfg.data.mode, cfg.data.noisy_intensity = "noise2noise", "robust"
    (im,) = pipeline.load_images([a], cfg.data, 64, noisy_paths=[b])
    raw_a = np.asarray(read_sections(a)[0][0], np.float32)
    raw_b = np.asarray(read_sections(b)[0][0], np.float32)
    expected_a, affine = to_unit255(raw_a, "robust")
    np.testing.assert_allclose(im.clean, expected_a, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(im.noisy, affine.forward(raw_b), rtol=1e-5, atol=1e-3)
    assert np.std(im.noisy) == pytest.approx(np.std(im.clean), rel=0.05)


def test_paired_batches_carry_each_images_sigma(make_mrc):
    """The noise-level channel of a paired batch is its image's sigma, on either backend."""
    from cryoem_denoise.runtime import backend

    cfg = tiny_config(batch_size=6)
    cfg.model.sigma_map = True
    cfg.data.mode = "noise2noise"
    cfg.data.swap_pairs = True
    images = []
    for seed, sigma_file in ((0, 0.5), (1, 3.0)):
        a, b = _halves(make_mrc, sigma_file, seed)
        images += pipeline.load_images([a], cfg.data, 64, noisy_paths=[b])
    assert images[0].sigma < images[1].sigma
    image_set = pipeline.pack(images, 64)
    if backend.name() == "tensorflow":
        noisy, clean = next(iter(pipeline.training_dataset(image_set, cfg)))
        noisy, clean = np.asarray(noisy), np.asarray(clean)
    else:
        data = pipeline.device_images(image_set)
        noisy, clean = (np.asarray(x) for x in pipeline.jax_batch(data, cfg, 0, 6))
    assert noisy.shape == (6, 64, 64, 2) and clean.shape == (6, 64, 64, 1)
    levels = noisy[..., 1].reshape(6, -1)
    assert (levels == levels[:, :1]).all()  # one constant plane per crop
    assert set(np.round(levels[:, 0], 4)) <= set(np.round(image_set.sigmas, 4))


@pytest.mark.slow
def test_fine_tuning_a_sigma_map_model_on_halves(sigma_map_model, make_mrc, tmp_path):
    """fit --noise2noise / --self-supervised --init-from a model with a noise-level input.

    The run takes the model's generator and the input scaling its weights were trained for,
    and keeps its BatchNorm as it is (statistics, scale and offset frozen, no
    recalibration); options given override that.
    """
    import shutil

    from click.testing import CliRunner

    from cryoem_denoise.model import model_store
    from cryoem_denoise.model.batch_norm import batch_norm_layers
    from cryoem_denoise.cli import cli

    start = tmp_path / "start"
    shutil.copytree(sigma_map_model, start)
    cfg = model_store.load_config(start)
    cfg.data.noisy_intensity, cfg.train.bn_recalibration = "robust", 8
    model_store.save_config(start, cfg)  # as the shipped model: weights for robust inputs
    before, _ = model_store.load_generator(start)
    a, b = _halves(make_mrc, 1.0, shape=(160, 160))
    for mode, args in (("noise2noise", [str(a), "--noisy", str(b), "--noise2noise"]),
                       ("self_supervised", [str(a), "--self-supervised", "--tile", "64"])):
        out = tmp_path / mode
        r = CliRunner().invoke(cli, ["fit", *args, "--init-from", str(start),
                                     "--steps", "3", "--batch-size", "2", "--out", str(out),
                                     "-q"])
        assert r.exit_code == 0, r.output
        tuned = model_store.load_config(out)
        assert tuned.model == cfg.model and tuned.model.sigma_map
        assert tuned.data.noisy_intensity == "robust"
        assert tuned.train.freeze_batch_norm and tuned.train.bn_recalibration == 0
        after, _ = model_store.load_generator(out)
        for old, new in zip(batch_norm_layers(before), batch_norm_layers(after)):
            for v, w in zip(old.weights, new.weights):  # statistics, scale and offset
                np.testing.assert_array_equal(np.asarray(v.value), np.asarray(w.value))
        changed = [not np.array_equal(np.asarray(v.value), np.asarray(w.value))
                   for v, w in zip(before.trainable_weights, after.trainable_weights)]
        assert any(changed)  # the convolutions were trained
        r = CliRunner().invoke(cli, ["apply", str(a), "--model", str(out), "--out",
                                     str(tmp_path / f"{mode}_out"), "-q"])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["fit", str(a), "--noisy", str(b), "--noise2noise",
                                 "--init-from", str(start), "--noisy-intensity", "minmax",
                                 "--no-freeze-batch-norm", "--bn-recalibration", "8",
                                 "--steps", "1", "--batch-size", "2",
                                 "--out", str(tmp_path / "explicit"), "-q"])
    assert r.exit_code == 0, r.output
    tuned = model_store.load_config(tmp_path / "explicit")
    assert tuned.data.noisy_intensity == "minmax" and not tuned.train.freeze_batch_norm
    assert model_store.load_metadata(tmp_path / "explicit")["batch_norm_recalibration"]["crops"] == 8


def test_presets_validate_and_paper_is_the_default():
    assert PRESETS["paper"]().to_dict() == FitConfig().to_dict()
    quality = PRESETS["quality"]()
    assert quality.model.sigma_map and quality.model.upsample == "resize"
    assert FitConfig.from_json(quality.to_json()).to_dict() == quality.to_dict()


def test_validation_set_carries_each_crops_sigma(clean_mrc):
    cfg = tiny_config()
    images = pipeline.load_images([clean_mrc("v.mrc", (100, 100))], cfg.data, 64)
    noisy, clean, sigma = pipeline.validation_set(images, cfg, 0)
    assert sigma.shape == (len(noisy),)
    spec = SigmaSpec.parse(cfg.data.sigma)
    assert ((sigma >= spec.low) & (sigma <= spec.high)).all()
    measured = (noisy - clean).std(axis=(1, 2))
    np.testing.assert_allclose(measured, sigma, rtol=0.1)


def test_sigma_map_model_trains_saves_and_denoises(sigma_map_model):
    from cryoem_denoise.inference.denoiser import Denoiser

    denoiser = Denoiser.load(sigma_map_model)
    assert denoiser.config.model.sigma_map and denoiser.takes_noise_level
    rng = np.random.default_rng(1)
    image = rng.uniform(50, 200, (96, 96)).astype(np.float32)
    a = denoiser.denoise_scaled(image, noise_level=30.0)
    b = denoiser.denoise_scaled(image, noise_level=30.0)
    c = denoiser.denoise_scaled(image, noise_level=10.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # the noise level reaches the network
    assert denoiser.denoise_scaled(image).shape == image.shape  # sigma estimated when not given


@pytest.mark.slow
def test_apply_reports_the_noise_level_and_warns_outside_the_trained_range(
        sigma_map_model, make_mrc, tmp_path):
    rng = np.random.default_rng(2)
    image = rng.normal(100, 1, (128, 128)).astype(np.float32)
    src = make_mrc(image, "in.mrc")
    r = _cli("apply", src, "--model", sigma_map_model, "--out", tmp_path / "a",
             "--noise-level", 30)
    assert r.returncode == 0, r.stderr
    assert "noise sigma 30.0 on [0,255] (given)" in r.stderr
    r = _cli("apply", src, "--model", sigma_map_model, "--out", tmp_path / "b", "--quiet",
             "--noise-level", 70)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "outside the sigma range" in r.stderr
    r = _cli("apply", src, "--model", sigma_map_model, "--out", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "(estimated)" in r.stderr


@pytest.mark.slow
def test_noise_level_on_a_model_without_that_input_is_one_line(tiny_model, make_mrc, tmp_path):
    src = make_mrc(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), "in.mrc")
    r = _cli("apply", src, "--model", tiny_model, "--out", tmp_path / "o", "--noise-level", 20)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "noise-level input" in lines[0]
    r = _cli("apply", src, "--model", tiny_model, "--out", tmp_path / "p", "--noise-level", -3)
    assert r.returncode == 2


def test_noisy_inputs_can_be_scaled_their_own_way(tmp_path, make_mrc):
    from cryoem_denoise.config import DataConfig

    data = DataConfig(noisy_intensity="robust")
    assert data.scaling(noisy=True)[0] == "robust" and data.scaling()[0] == "minmax"
    assert DataConfig().scaling(noisy=True)[0] == "minmax"  # the paper: one scaling for all
    with pytest.raises(ConfigError):
        DataConfig(noisy_intensity="nope").validate()


@pytest.mark.slow
def test_fit_sim_preset_and_pixel_size_range(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cryoem_denoise.model import model_store

    from cryoem_denoise.io import mrc
    from cryoem_denoise.cli import cli

    rng = np.random.default_rng(0)
    vol = np.zeros((9, 11, 13), np.float32)
    vol[2:7, 3:8, 4:9] = rng.uniform(0.5, 2.0, (5, 5, 5))
    source = tmp_path / "blob.map"
    mrc.write_mrc(source, vol, voxel_size=(1.0, 1.0, 1.0), kind="volume")
    monkeypatch.setenv("CRYOEM_DENOISE_DATA", str(tmp_path / "cache"))
    out = tmp_path / "model"
    r = CliRunner().invoke(cli, ["fit", "--tiny", "--simulate", str(source), "--sim-fields", "6",
                                 "--pixel-size", "1:2", "--steps", "2", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert model_store.load_config(out).simulation.pixel_size == (1.0, 2.0)
    r = CliRunner().invoke(cli, ["fit", "--tiny", "--simulate", str(source), "--sim-fields", "6",
                                 "--sim-preset", "broad", "--pixel-size", "1:2", "--steps", "2",
                                 "--out", str(tmp_path / "m2"), "-q"])
    assert r.exit_code == 0, r.output
    sim = model_store.load_config(tmp_path / "m2").simulation
    assert sim.b_factor == (0.0, 150.0) and sim.fields == 6
    r = CliRunner().invoke(cli, ["fit", "--tiny", "--preset", "quality", "--out",
                                 str(tmp_path / "m3")])
    assert r.exit_code == 2 and "--tiny" in r.output
    r = CliRunner().invoke(cli, ["fit", "--tiny", "--pixel-size", "a:b", "--out",
                                 str(tmp_path / "m4")])
    assert r.exit_code == 2


def test_an_estimate_outside_the_trained_range_warns(sigma_map_model):
    from cryoem_denoise.errors import InputWarning
    from cryoem_denoise.inference.denoiser import Denoiser

    denoiser = Denoiser.load(sigma_map_model)  # trained on sigma 20-40
    image = 128 + 5 * np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    with pytest.warns(InputWarning, match=r"estimated noise sigma [45]\.\d .*20-40"):
        denoiser.denoise_scaled(image)
