"""The public API: a notebook user denoises an array in three lines, as ``apply`` would."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import cryoem_denoise
from cryoem_denoise import Denoiser, ImageHeader, read_image, write_image
from cryoem_denoise.cli import cli
from cryoem_denoise.errors import ConfigError, InputError, InputWarning
from cryoem_denoise.evaluation import evaluate as ev
from cryoem_denoise.tools import imports


def test_public_names_and_no_keras_on_import():
    assert set(cryoem_denoise.__all__) == {"Denoiser", "fit", "read_image", "write_image",
                                           "ImageHeader", "__version__"}
    for name in cryoem_denoise.__all__:
        assert getattr(cryoem_denoise, name) is not None
    with pytest.raises(AttributeError):
        cryoem_denoise.no_such_name  # noqa: B018
    code = "import sys, cryoem_denoise; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_no_import_cycles_and_no_hidden_package_imports():
    graph = imports.module_imports()
    assert "cryoem_denoise.inference.denoiser" in graph
    assert imports.import_cycles(graph) == []
    assert imports.function_level_imports(graph) == []
    assert imports.layer_violations(graph) == []
    # an import from a higher layer is caught
    assert imports.layer_violations({"cryoem_denoise.io.mrc": {"cryoem_denoise.model.models": False}}) \
        == [("cryoem_denoise.io.mrc", "cryoem_denoise.model.models")]
    # the checker sees a cycle when there is one
    assert imports.import_cycles({"a": {"b": False}, "b": {"a": True}}) == [["a", "b"]]


def test_three_lines_give_what_apply_writes(tiny_model, clean_mrc, tmp_path):
    path = clean_mrc("micrograph.mrc", (150, 130))
    image, header = read_image(path)
    assert isinstance(header, ImageHeader) and image.shape == (150, 130)
    assert image.dtype == np.float32
    denoised = Denoiser.load(tiny_model, tile=64, overlap=16).denoise(
        image, pixel_size=header.pixel_size)
    write_image(tmp_path / "api.mrc", denoised, header)

    result = CliRunner().invoke(cli, ["apply", str(path), "--model", str(tiny_model), "--out",
                                      str(tmp_path / "cli"), "--tile", "64", "--overlap", "16",
                                      "-q"])
    assert result.exit_code == 0, result.output
    by_cli, cli_header = read_image(tmp_path / "cli" / "micrograph_denoised.mrc")
    by_api, api_header = read_image(tmp_path / "api.mrc")
    np.testing.assert_allclose(by_api, by_cli, rtol=1e-5, atol=1e-3 * float(np.ptp(by_cli)))
    assert api_header.voxel_size == cli_header.voxel_size == header.voxel_size
    assert not np.allclose(by_api, image)  # it did something, in the input's units
    assert abs(float(by_api.mean()) - float(image.mean())) < 0.2 * float(image.std())


def test_stacks_are_denoised_section_by_section(tiny_model, clean_mrc):
    # section by section, but with one noise spectrum measured on the stack: alone, a
    # section gets its own (the same result with the file-level steps off)
    stack, _ = read_image(clean_mrc("p.mrcs", (3, 48, 48), stack=True, seed=1))
    for options, same in (({}, False), ({"whiten": False, "keep_below": 0.0}, True)):
        denoiser = Denoiser.load(tiny_model, tile=64, overlap=16, **options)
        out = denoiser.denoise(stack)
        assert out.shape == stack.shape
        alone = denoiser.denoise(stack[1])
        assert np.allclose(out[1], alone, rtol=1e-6, atol=1e-4) == same


def test_denoiser_refuses_what_it_cannot_use(tiny_model):
    denoiser = Denoiser.load(tiny_model, tile=64, overlap=16)
    assert not denoiser.takes_noise_level
    with pytest.raises(ConfigError, match="noise-level input"):
        denoiser.denoise(np.ones((64, 64), np.float32), noise_level=20)
    with pytest.raises(InputError, match="2D image or a 3D stack"):
        denoiser.denoise(np.ones(64, np.float32))
    bad = np.ones((64, 64), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        denoiser.denoise(bad)


def test_shipped_model_knows_its_scaling_and_pixel_sizes():
    denoiser = Denoiser.load("default")
    assert denoiser.takes_noise_level and denoiser.trained_pixel_sizes == (0.7, 3.0)
    rng = np.random.default_rng(0)
    image = rng.normal(3000, 600, (64, 64)).astype(np.float32)
    scaled, affine = denoiser.scale(image)  # the robust scaling of noisy inputs
    assert denoiser.config.data.noisy_intensity == "robust"
    np.testing.assert_allclose(affine.inverse(scaled), image, rtol=1e-5)
    with warnings.catch_warnings():  # resampled into the trained pixel sizes: no warning
        warnings.simplefilter("error", InputWarning)
        denoiser.check_pixel_size(0.3)
    not_resampled = Denoiser.load("default", resample=False)
    with pytest.warns(InputWarning, match="pixel size 0.3 Å is outside"):
        not_resampled.check_pixel_size(0.3)


def test_apply_sigma_and_evaluate_add_the_same_noise(tiny_model, clean_mrc, tmp_path):
    """The paper's sigma protocol is one definition: same file, section, sigma, seed."""
    path = clean_mrc("clean.mrc", (96, 96))
    result = CliRunner().invoke(cli, ["apply", str(path), "--model", str(tiny_model), "--out",
                                      str(tmp_path / "o"), "--sigma", "40", "--seed", "3",
                                      "--tile", "64", "-q"])
    assert result.exit_code == 0, result.output
    noisy_by_apply, _ = read_image(tmp_path / "o" / "clean_noisy.mrc")
    cfg = ev.EvaluateConfig(sigmas=(40.0,), methods=("noisy",), seed=3).validate()
    clean = ev.load_clean_images([path], cfg)[0]
    noisy_by_evaluate = ev.noisy_version(clean, 40.0, 3)
    # apply writes the noisy image back in file units; evaluate keeps it on [0, 255]
    affine = Denoiser.load(tiny_model).affine(read_image(path)[0], noisy=False)
    np.testing.assert_allclose(affine.forward(noisy_by_apply), noisy_by_evaluate, atol=1e-2)
