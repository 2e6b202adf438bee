"""apply --noisy-halves: each half denoised alone, their average written, FRC before/after."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cryoem_denoise.io import image_io

pytestmark = pytest.mark.backends


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cryoem_denoise", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def halves(make_mrc):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    clean = (gaussian_filter(rng.normal(0, 1, (2, 128, 128)), (0, 3, 3)) * 80 + 100).clip(1)
    a = make_mrc(rng.poisson(clean).astype(np.float32), "even.mrcs", voxel_size=1.2, stack=True)
    b = make_mrc(rng.poisson(clean).astype(np.float32), "odd.mrcs", voxel_size=1.2, stack=True)
    return a, b


@pytest.mark.slow
def test_halves_are_denoised_apart_and_averaged(halves, tiny_model, tmp_path):
    from cryoem_denoise.inference.denoiser import Denoiser, InferenceConfig

    a, b = halves
    out = tmp_path / "out"
    result = _cli("apply", "--model", tiny_model, "--tile", 64, "--overlap", 16,
                  "--noisy-halves", a, b, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "FRC 0.143 of the halves" in result.stdout
    average, header = image_io.read_sections(out / "even_denoised.mrcs")  # the input's extension
    assert average.shape == (2, 128, 128) and header.pixel_size == pytest.approx(1.2)
    den = Denoiser.load(tiny_model, InferenceConfig(64, 16, 16, "float32"))
    sa, sb = image_io.read_sections(a)[0], image_io.read_sections(b)[0]
    expected = 0.5 * (den.denoise(sa[1]) + den.denoise(sb[1]))
    np.testing.assert_allclose(average[1], expected, rtol=1e-4, atol=1e-2)
    report = json.loads((out / "even_denoised_frc.json").read_text())
    assert len(report["sections"]) == 2 and report["pixel_size"] == pytest.approx(1.2)
    for s in report["sections"]:
        for key in ("raw", "denoised"):
            assert s[key]["threshold"] == 0.143
    assert (out / "even_denoised_frc.png").stat().st_size > 1000
    again = _cli("apply", "--model", tiny_model, "--tile", 64, "--noisy-halves", a, b,
                 "--out", out)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.slow
def test_mismatched_halves_are_refused(halves, make_mrc, tiny_model, tmp_path):
    a, _ = halves
    other = make_mrc(np.random.default_rng(0).poisson(50, (2, 96, 128)).astype(np.float32),
                     "other.mrcs", voxel_size=1.2, stack=True)
    finer = make_mrc(np.random.default_rng(0).poisson(50, (2, 128, 128)).astype(np.float32),
                     "finer.mrcs", voxel_size=0.6, stack=True)
    for b, message in ((other, "differs from the other half"), (finer, "pixel size")):
        out = tmp_path / "o"
        result = _cli("apply", "--model", tiny_model, "--tile", 64, "--noisy-halves", a, b,
                      "--out", out)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert not out.exists()
    both = _cli("apply", a, "--noisy-halves", a, other, "--out", tmp_path / "p")
    assert both.returncode == 2 and "no INPUTS" in both.stderr
