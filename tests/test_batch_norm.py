"""BatchNorm population statistics ("precise BN") and their use when training ends."""

import json

import numpy as np
import pytest

from cryoem_denoise import training

from cryoem_denoise.model import batch_norm

from cryoem_denoise.model import model_store
from cryoem_denoise.config import tiny_config

pytestmark = pytest.mark.backends


def _two_norm_model():
    import keras
    from keras import layers

    x = keras.Input((None, None, 1))
    a = layers.Conv2D(3, 3, padding="same", name="a")(x)
    y = layers.BatchNormalization(name="bn1")(a)
    y = layers.Conv2D(2, 3, padding="same", name="b")(layers.ReLU()(y))
    y = layers.BatchNormalization(name="bn2")(y)
    return keras.Model(x, y), keras.Model(x, a)


def test_population_statistics_are_the_moments_over_all_crops():
    from keras import ops

    model, first_conv = _two_norm_model()
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, (4, 16, 16, 1)).astype(np.float32) for _ in range(5)]
    stats = batch_norm.population_statistics(model, batches)
    assert len(stats) == 2 and all(m.shape == v.shape for m, v in stats)
    # the first BatchNorm's input depends on no other BatchNorm: its exact moments
    features = np.concatenate([ops.convert_to_numpy(first_conv(b)) for b in batches])
    np.testing.assert_allclose(stats[0][0], features.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats[0][1], features.var(axis=(0, 1, 2)), rtol=1e-3)
    # ... whatever the batching
    regrouped = [np.concatenate(batches[:2]), np.concatenate(batches[2:4]), batches[4]]
    again = batch_norm.population_statistics(model, [b[:4] for b in regrouped[:2]] + [
        b[4:] for b in regrouped[:2]] + [regrouped[2]])
    np.testing.assert_allclose(again[0][0], stats[0][0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        batch_norm.population_statistics(model, [])


def test_recalibrate_sets_the_moving_statistics_and_changes_no_weight():
    from keras import ops

    model, _ = _two_norm_model()
    rng = np.random.default_rng(1)
    batches = [rng.normal(5.0, 2.0, (4, 8, 8, 1)).astype(np.float32) for _ in range(3)]
    kernels = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert batch_norm.recalibrate(model, batches) == 2
    stats = batch_norm.population_statistics(model, batches)
    # (a second pass through the network: eager float32 reductions may round differently)
    for layer, (mean, var) in zip(batch_norm.batch_norm_layers(model), stats):
        np.testing.assert_allclose(ops.convert_to_numpy(layer.moving_mean), mean, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(ops.convert_to_numpy(layer.moving_variance), var, rtol=1e-3)
    for before, v in zip(kernels, model.trainable_variables):
        np.testing.assert_array_equal(before, ops.convert_to_numpy(v))
    # inference now normalises the first layer's features like one big training batch
    out = ops.convert_to_numpy(model(np.concatenate(batches), training=False))
    assert abs(out.mean()) < 0.5


@pytest.mark.slow
def test_fit_recalibrates_the_saved_generator_but_not_its_checkpoint(clean_mrc, tmp_path):
    training_image = clean_mrc("train.mrc", (192, 192), seed=3)
    cfg = tiny_config(steps=6, batch_size=2, log_every=3, validate_every=6,
                      checkpoint_every=6, bn_recalibration=8)
    meta = training.fit(cfg, [training_image], tmp_path / "m")
    record = meta["batch_norm_recalibration"]
    assert record["crops"] == 8
    assert set(record["validation"]) >= {"val_psnr", "val_ssim"}
    saved = json.loads((tmp_path / "m" / model_store.METADATA).read_text())
    assert saved["batch_norm_recalibration"]["crops"] == 8

    # the checkpoint keeps the moving averages; the generator file has the recalibrated ones
    plain = training.fit(tiny_config(steps=6, batch_size=2, log_every=3, validate_every=6,
                                     checkpoint_every=6), [training_image], tmp_path / "p")
    assert "batch_norm_recalibration" not in plain
    ck = model_store.load_checkpoint(model_store.checkpoint_paths(tmp_path / "m")[-1][1])
    ck_plain = model_store.load_checkpoint(model_store.checkpoint_paths(tmp_path / "p")[-1][1])
    for key in ck_plain:
        np.testing.assert_array_equal(ck[key], ck_plain[key])
    recal = _generator_arrays(tmp_path / "m")
    moving = _generator_arrays(tmp_path / "p")
    assert any(not np.array_equal(a, b) for a, b in zip(recal, moving))

    # a finished run resumed with the option changed is recalibrated, nothing retrained
    again = training.fit(cfg, [training_image], tmp_path / "p", resume=True)
    assert again["steps"] == 6 and again["batch_norm_recalibration"]["crops"] == 8
    for a, b in zip(_generator_arrays(tmp_path / "p"), recal):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _generator_arrays(model_dir):
    from keras import ops

    from cryoem_denoise.inference.denoiser import Denoiser

    denoiser = Denoiser.load(model_dir)
    return [ops.convert_to_numpy(v) for v in denoiser.tiles.generator.variables]
