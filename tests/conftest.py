"""Shared fixtures: small MRC files made on the fly, and the fetched sample data."""

import mrcfile
import numpy as np
import pytest


@pytest.fixture
def make_mrc(tmp_path):
    """``make_mrc(data, name='x.mrc', voxel_size=1.5, stack=False)`` writes an MRC file."""

    def _make(data, name="image.mrc", voxel_size=1.5, stack=False):
        path = tmp_path / name
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.asarray(data))
            if stack:
                mrc.set_image_stack()
            mrc.voxel_size = voxel_size
        return path

    return _make


@pytest.fixture
def smooth_image():
    """A 96x80 float32 image on [0, 255] with structure at several scales."""
    y, x = np.mgrid[0:96, 0:80].astype(np.float32)
    img = 120 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0) + 40 * np.exp(-((x - 40) ** 2 + (y - 50) ** 2) / 200)
    return img.astype(np.float32)


@pytest.fixture(scope="session")
def sample_files():
    """Paths of the real sample data (fetched by ``make test``; fetched here if missing)."""
    from cryoem_denoise.data import datasets

    return datasets.fetch()


@pytest.fixture
def clean_mrc(make_mrc):
    """``clean_mrc(name, shape, seed)``: a smooth random 'micrograph' (blobs on a gradient)."""

    def _make(name="clean.mrc", shape=(160, 144), seed=0, stack=False):
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(seed)
        data = rng.normal(0, 1, shape)
        data = gaussian_filter(data, sigma=[0] * (data.ndim - 2) + [3, 3]) * 20
        data += 5 * np.linspace(0, 1, shape[-2])[:, None] + 100
        return make_mrc(data.astype(np.float32), name, stack=stack)

    return _make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny model folder trained briefly on synthetic images (shared by the tests)."""
    from scipy.ndimage import gaussian_filter

    from cryoem_denoise import training

    from cryoem_denoise.io import mrc
    from cryoem_denoise.config import tiny_config

    folder = tmp_path_factory.mktemp("tiny_model")
    rng = np.random.default_rng(42)
    data = gaussian_filter(rng.normal(0, 1, (256, 256)), 4).astype(np.float32)
    mrc.write_mrc(folder / "train.mrc", data)
    cfg = tiny_config(steps=80, batch_size=4, g_lr=1e-3, log_every=40, validate_every=80,
                      checkpoint_every=80)
    cfg.data.sigma = "20:40"
    training.fit(cfg, [folder / "train.mrc"], folder / "model")
    return folder / "model"
