import numpy as np
import pytest

from cryoem_denoise.io import image_io

from cryoem_denoise.data import pipeline
from cryoem_denoise.config import DataConfig, tiny_config
from cryoem_denoise.errors import InputError


def test_find_mrc_files(clean_mrc, tmp_path):
    a = clean_mrc("a.mrc")
    clean_mrc("b.mrcs", seed=1)
    (tmp_path / "notes.txt").write_text("x")
    assert image_io.find_image_files([tmp_path]) == [a, tmp_path / "b.mrcs"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no MRC files"):
        image_io.find_image_files([empty])
    with pytest.raises(InputError, match="no such file"):
        image_io.find_image_files([tmp_path / "nope.mrc"])
    assert image_io.find_image_files([str(tmp_path / "*.mrc*"), a]) == [a, tmp_path / "b.mrcs"]
    with pytest.raises(InputError, match="matches no files"):
        image_io.find_image_files([str(tmp_path / "*.map")])


def test_load_rejects_bad_images(make_mrc, clean_mrc):
    data = DataConfig()
    nan = np.ones((80, 80), np.float32)
    nan[1, 1] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        pipeline.load_images([make_mrc(nan, "nan.mrc")], data, 64)
    with pytest.raises(InputError, match="constant"):
        pipeline.load_images([make_mrc(np.zeros((80, 80), np.float32), "c.mrc")], data, 64)
    with pytest.raises(InputError, match="smaller than 32"):
        pipeline.load_images([clean_mrc("small.mrc", (20, 80))], data, 64)
    with pytest.raises(InputError, match="no training images"):
        pipeline.load_images([], data, 64)


def test_images_scaled_and_small_ones_padded(clean_mrc):
    images = pipeline.load_images([clean_mrc("s.mrc", (40, 50))], DataConfig(), 64)
    assert images[0].clean.min() == 0 and images[0].clean.max() == pytest.approx(255)
    packed = pipeline.pack(images, 64)
    assert packed.heights[0] == 64 and packed.widths[0] == 64


def test_validation_split_has_no_overlap(clean_mrc):
    images = pipeline.load_images([clean_mrc("m.mrc", (300, 100))], DataConfig(), 64)
    train, val = pipeline.split_validation(images, 0.25, 64)
    assert train[0].clean.shape[0] + val[0].clean.shape[0] == 300
    assert val[0].clean.shape[0] >= 64
    stack = pipeline.load_images([clean_mrc("p.mrcs", (12, 64, 64), stack=True)], DataConfig(), 64)
    train, val = pipeline.split_validation(stack, 0.1, 64)
    assert len(train) == 11 and len(val) == 1


def _batches(image_set, cfg, n, start=0):
    it = iter(pipeline.training_dataset(image_set, cfg, start_element=start))
    return [tuple(t.numpy() for t in next(it)) for _ in range(n)]


def test_dataset_is_deterministic_and_resumable(clean_mrc):
    cfg = tiny_config(batch_size=3)
    cfg.data.sigma = "40"
    s = pipeline.pack(pipeline.load_images([clean_mrc("a.mrc", (200, 180)), clean_mrc("b.mrc", seed=2)],
                                           cfg.data, 64), 64)
    first = _batches(s, cfg, 4)
    again = _batches(s, cfg, 4)
    for (n1, c1), (n2, c2) in zip(first, again):
        np.testing.assert_array_equal(n1, n2)
        np.testing.assert_array_equal(c1, c2)
    resumed = _batches(s, cfg, 2, start=2 * 3)
    np.testing.assert_array_equal(resumed[0][0], first[2][0])
    np.testing.assert_array_equal(resumed[1][1], first[3][1])
    noisy, clean = first[0]
    assert noisy.shape == (3, 64, 64, 1) and clean.dtype == np.float32
    assert 0 <= clean.min() and clean.max() <= 255
    assert np.std(noisy - clean) == pytest.approx(40, rel=0.05)
    cfg.train.seed = 1
    other = _batches(s, cfg, 1)
    assert not np.array_equal(other[0][1], first[0][1])


def test_paired_mode_crops_both_files_alike(make_mrc, clean_mrc):
    clean_path = clean_mrc("c.mrc", (128, 128))
    import mrcfile

    with mrcfile.open(clean_path) as m:
        clean = m.data.copy()
    noisy_path = make_mrc(clean + 3.0, "n.mrc")
    cfg = tiny_config(batch_size=2)
    images = pipeline.load_images([clean_path], cfg.data, 64, noisy_paths=[noisy_path])
    s = pipeline.pack(images, 64)
    noisy, clean_b = _batches(s, cfg, 1)[0]
    offset = noisy - clean_b  # the same constant offset everywhere: same crop, no noise added
    assert np.ptp(offset) < 1e-3 and offset.mean() > 0


def test_validation_set_is_fixed(clean_mrc):
    cfg = tiny_config()
    images = pipeline.load_images([clean_mrc("v.mrc", (100, 100))], cfg.data, 64)
    a = pipeline.validation_set(images, cfg, 0)
    b = pipeline.validation_set(images, cfg, 0)
    assert a[0].shape == (4, 64, 64)
    np.testing.assert_array_equal(a[0], b[0])
