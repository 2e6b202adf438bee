import json

import numpy as np
import pytest
from click.testing import CliRunner

from cryoem_denoise.inference import apply_files

from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.cli import cli
from cryoem_denoise.errors import ConfigError, OutputError


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _apply(model, out, *args):
    return run("apply", "--model", model, "--out", out, "--tile", 64, "--overlap", 16, "-q", *args)


@pytest.fixture
def inputs(tmp_path, clean_mrc):
    folder = tmp_path / "in"
    folder.mkdir()
    image = clean_mrc("in/micrograph.mrc", (150, 130))
    stack = clean_mrc("in/particles.mrcs", (5, 48, 48), stack=True, seed=1)
    volume = clean_mrc("in/volume.map", (3, 70, 70), seed=2)
    return folder, image, stack, volume


@pytest.mark.backends
def test_apply_images_stacks_and_volumes(tiny_model, inputs, tmp_path):
    folder, image, stack, volume = inputs
    out = tmp_path / "out"
    result = _apply(tiny_model, out, folder, "--png")
    assert result.exit_code == 0, result.output
    assert "3 file(s) denoised" in result.output
    for src, name, shape, kind in [(image, "micrograph_denoised.mrc", (1, 150, 130), "image"),
                                   (stack, "particles_denoised.mrcs", (5, 48, 48), "stack"),
                                   (volume, "volume_denoised.map", (3, 70, 70), "volume")]:
        data, header = image_io.read_sections(out / name)
        assert header.shape == shape and header.kind == kind and header.mode == 2
        assert header.voxel_size == image_io.read_header(src).voxel_size
        src_data, _ = image_io.read_sections(src)
        # back in the input's units: same ballpark of values, less noise
        assert abs(data.mean() - src_data.mean()) < 3 * src_data.std()
    for png in ("micrograph_denoised.png", "micrograph_compare.png", "particles_compare.png"):
        assert (out / png).stat().st_size > 1000


def test_apply_is_deterministic_and_float16(tiny_model, inputs, tmp_path):
    folder, image, *_ = inputs
    assert _apply(tiny_model, tmp_path / "a", image).exit_code == 0
    assert _apply(tiny_model, tmp_path / "b", image).exit_code == 0
    a, _ = image_io.read_sections(tmp_path / "a" / "micrograph_denoised.mrc")
    b, _ = image_io.read_sections(tmp_path / "b" / "micrograph_denoised.mrc")
    np.testing.assert_array_equal(a, b)
    assert _apply(tiny_model, tmp_path / "c", image, "--format", "float16").exit_code == 0
    c, header = image_io.read_sections(tmp_path / "c" / "micrograph_denoised.mrc")
    assert header.mode == 12
    np.testing.assert_allclose(c, a, rtol=2e-3)


@pytest.mark.slow
@pytest.mark.backends
def test_self_ensemble_averages_rotations_deterministically(tiny_model, inputs, tmp_path):
    folder, image, *_ = inputs
    for name in ("a", "b"):
        result = _apply(tiny_model, tmp_path / name, image, "--self-ensemble")
        assert result.exit_code == 0, result.output
    plain = _apply(tiny_model, tmp_path / "plain", image)
    assert plain.exit_code == 0
    a, _ = image_io.read_sections(tmp_path / "a" / "micrograph_denoised.mrc")
    b, _ = image_io.read_sections(tmp_path / "b" / "micrograph_denoised.mrc")
    p, _ = image_io.read_sections(tmp_path / "plain" / "micrograph_denoised.mrc")
    np.testing.assert_array_equal(a, b)
    assert a.shape == p.shape and not np.allclose(a, p)
    assert abs(float(a.mean()) - float(p.mean())) < 0.1 * float(p.std())


@pytest.mark.backends
def test_sigma_protocol_writes_noisy_and_metrics(tiny_model, inputs, tmp_path):
    folder, image, stack, _ = inputs
    out = tmp_path / "sigma"
    result = _apply(tiny_model, out, image, stack, "--sigma", 30, "--seed", 5)
    assert result.exit_code == 0, result.output
    assert "sigma 30: PSNR" in result.output
    record = json.loads((out / "metrics.json").read_text())
    assert record["sigma"] == 30 and len(record["rows"]) == 1 + 5
    row = record["rows"][0]
    assert row["noisy_psnr"] == pytest.approx(10 * np.log10(255 ** 2 / 900), abs=0.3)
    assert row["noisy_rmse"] == pytest.approx(30, rel=0.03)
    assert {"denoised_mae", "denoised_mse", "denoised_rmse", "denoised_psnr", "denoised_ssim"} <= set(row)
    md = (out / "metrics.md").read_text()
    assert "| PSNR ↑ (dB) |" in md and "particles.mrcs" in md
    assert (out / "metrics.csv").read_text().count("\n") == 7
    noisy, _ = image_io.read_sections(out / "micrograph_noisy.mrc")
    clean, _ = image_io.read_sections(image)
    assert noisy.shape == clean.shape and not np.allclose(noisy, clean)
    again = _apply(tiny_model, tmp_path / "sigma2", image, "--sigma", 30, "--seed", 5)
    assert again.exit_code == 0
    np.testing.assert_array_equal(image_io.read_sections(tmp_path / "sigma2" / "micrograph_noisy.mrc")[0],
                                  noisy)


def test_refuses_to_clobber_then_skip_or_overwrite(tiny_model, inputs, tmp_path):
    folder, image, *_ = inputs
    out = tmp_path / "o"
    assert _apply(tiny_model, out, image).exit_code == 0
    before = (out / "micrograph_denoised.mrc").stat().st_mtime_ns
    again = _apply(tiny_model, out, image)
    assert again.exit_code == 2 and "already exists" in again.output
    skipped = _apply(tiny_model, out, image, "--skip-existing")
    assert skipped.exit_code == 0 and "1 skipped" in skipped.output
    assert (out / "micrograph_denoised.mrc").stat().st_mtime_ns == before
    # a job left half done (PNG missing) is redone under --skip-existing
    redo = _apply(tiny_model, out, image, "--skip-existing", "--png")
    assert redo.exit_code == 0 and "1 file(s) denoised" in redo.output
    assert (out / "micrograph_compare.png").exists()
    assert _apply(tiny_model, out, image, "--overwrite").exit_code == 0


def test_never_writes_over_an_input(tiny_model, inputs):
    folder, *_ = inputs
    result = _apply(tiny_model, folder, folder, "--suffix", "")
    assert result.exit_code == 2 and "would overwrite the input" in result.output


def test_shards_split_a_folder_without_overlap(tiny_model, inputs, tmp_path):
    folder, *_ = inputs
    names = []
    for k in range(2):
        out = tmp_path / f"shard{k}"
        assert _apply(tiny_model, out, folder, "--shard", f"{k}/2").exit_code == 0
        names.append({p.name for p in out.glob("*_denoised.*")})
    assert not names[0] & names[1] and len(names[0] | names[1]) == 3
    with pytest.raises(ConfigError):
        apply_files.parse_shard("2/2")


def test_bad_file_is_reported_and_the_rest_written(tiny_model, inputs, tmp_path):
    folder, *_ = inputs
    (folder / "broken.mrc").write_bytes(b"garbage" * 300)
    out = tmp_path / "mixed"
    result = _apply(tiny_model, out, folder)
    assert result.exit_code == 3  # some files failed, the others are written
    assert "broken.mrc: not an MRC file" in result.output
    assert len(list(out.glob("*_denoised.*"))) == 3
    assert not list(out.glob(".*"))  # no temporary leftovers


def test_missing_model_is_a_clear_error(inputs, tmp_path):
    folder, *_ = inputs
    result = _apply(tmp_path / "no-model", tmp_path / "x", folder)
    assert result.exit_code == 2 and "model folder does not exist" in result.output


def test_disk_full_leaves_no_truncated_output(tiny_model, inputs, tmp_path, monkeypatch):
    folder, image, *_ = inputs
    real_new_mmap = mrc.mrcfile.new_mmap

    def full_disk(*args, **kwargs):
        handle = real_new_mmap(*args, **kwargs)

        def fail():
            raise OSError(28, "No space left on device")

        handle.update_header_stats = fail
        return handle

    monkeypatch.setattr(mrc.mrcfile, "new_mmap", full_disk)
    out = tmp_path / "full"
    result = _apply(tiny_model, out, image)
    assert result.exit_code == 2 and "no space left on device" in result.output
    assert not out.exists() or list(out.iterdir()) == []  # the folder it made is removed


def test_plan_checks_output_names(tmp_path):
    a = tmp_path / "x" / "same.mrc"
    b = tmp_path / "y" / "same.mrc"
    for p in (a, b):
        p.parent.mkdir()
        mrc.write_mrc(p, np.ones((16, 16), np.float32) * np.arange(16))
    with pytest.raises(OutputError, match="would be written here"):
        apply_files.plan_jobs([a, b], apply_files.ApplyOptions(out_dir=tmp_path))
    assert apply_files.split_name("emd_1.map.gz") == ("emd_1", ".map")


@pytest.mark.backends
def test_shipped_default_model_is_used_without_model(inputs, tmp_path):
    """The package ships a model (<= 20 MiB) that apply uses when --model is not given."""
    from cryoem_denoise import config
    from cryoem_denoise.model import model_store

    folder = model_store.default_model_dir()
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size <= 20 * 2 ** 20
    cfg = model_store.load_config(folder)
    meta = model_store.load_metadata(folder)
    # a time-boxed run (fit --max-minutes) may stop before cfg.train.steps
    assert 0 < meta["steps"] <= cfg.train.steps and meta["seed"] == cfg.train.seed
    assert meta["environment"]["packages"] and meta["train_seconds"] > 0
    # the quality recipe, with BatchNorm statistics of many crops (not the moving averages)
    recipe = config.quality_config()
    for section in ("model", "data", "simulation"):
        assert getattr(cfg, section) == getattr(recipe, section)
    bookkeeping = {"steps", "precision", "log_every", "validate_every", "checkpoint_every"}
    for name, value in vars(recipe.train).items():
        assert name in bookkeeping or getattr(cfg.train, name) == value, name
    assert meta["batch_norm_recalibration"]["crops"] == cfg.train.bn_recalibration > 0
    _, image, *_ = inputs
    out = tmp_path / "out"
    result = run("apply", image, "--out", out, "-q", "--sigma", 40, "--seed", 0)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "metrics.json").read_text())["rows"][0]
    assert (out / "micrograph_denoised.mrc").is_file()
    # a trained denoiser: clearly better than the noisy input at sigma 40
    assert row["denoised_psnr"] > row["noisy_psnr"] + 3, row
    assert row["denoised_ssim"] > row["noisy_ssim"], row


# -- file formats, pixel sizes, the old --format spelling ---------------------------------------
def _tiffs(folder):
    import tifffile

    rng = np.random.default_rng(7)
    from scipy.ndimage import gaussian_filter

    stack = (gaussian_filter(rng.normal(0, 1, (3, 70, 90)), (0, 3, 3)) * 3000 + 20000)
    single = stack[0] / 200
    tifffile.imwrite(folder / "movie_sum.tif", single.astype(np.uint8))
    tifffile.imwrite(folder / "stack.tiff", stack.astype(np.uint16), photometric="minisblack")
    return folder / "movie_sum.tif", folder / "stack.tiff"


@pytest.mark.slow
def test_tiff_inputs_give_tiff_outputs_or_the_format_asked(tiny_model, tmp_path):
    from cryoem_denoise.io import image_io

    folder = tmp_path / "tiffs"
    folder.mkdir()
    single, stack = _tiffs(folder)
    out = tmp_path / "o"
    result = _apply(tiny_model, out, folder, "--png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "movie_sum_compare.png", "movie_sum_denoised.png", "movie_sum_denoised.tif",
        "movie_sum_spectrum.png",
        "report.csv", "report.html",  # a run over several files: a report to scan
        "stack_compare.png", "stack_denoised.png", "stack_denoised.tiff", "stack_spectrum.png"]
    data, header = image_io.read_sections(out / "stack_denoised.tiff")
    assert header.format == "tiff" and header.kind == "stack" and header.shape == (3, 70, 90)
    assert header.dtype == "float32" and 15000 < data.mean() < 25000  # the input's units
    for fmt, name in (("mrc", "stack_denoised.mrc"), ("tiff", "stack_denoised.tiff")):
        result = _apply(tiny_model, tmp_path / fmt, stack, "--format", fmt, "--dtype", "float16",
                        "--pixel-size", "1.06")
        assert result.exit_code == 0, result.output
        header = image_io.read_header(tmp_path / fmt / name)
        assert header.format == fmt and header.dtype == "float16"
        assert header.pixel_size == pytest.approx(1.06, abs=1e-4)
    result = _apply(tiny_model, tmp_path / "png", single, "--format", "png")
    assert result.exit_code == 0, result.output
    data, header = image_io.read_sections(tmp_path / "png" / "movie_sum_denoised.png")
    assert header.dtype == "uint8" and header.shape == (1, 70, 90)  # the input's 8 bits


def test_pixel_size_fills_placeholders_only(tiny_model, tmp_path, make_mrc, clean_mrc):
    placeholder = clean_mrc("p.mrc", (64, 64))
    with mrc.mrcfile.open(placeholder, "r+") as m:
        m.voxel_size = 1.0
    real = make_mrc(image_io.read_sections(placeholder)[0][0], "real.mrc", voxel_size=0.83)
    out = tmp_path / "o"
    assert _apply(tiny_model, out, placeholder, real, "--pixel-size", "1.34").exit_code == 0
    assert image_io.read_header(out / "p_denoised.mrc").pixel_size == pytest.approx(1.34, abs=1e-4)
    assert image_io.read_header(out / "real_denoised.mrc").pixel_size == pytest.approx(0.83, abs=1e-4)


def test_old_format_spelling_still_works_with_a_note(tiny_model, inputs, tmp_path):
    folder, image, *_ = inputs
    result = _apply(tiny_model, tmp_path / "o", image, "--format", "float16")
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(notes) == 1 and "--format float16 is deprecated" in notes[0]
    assert "use --dtype float16" in result.stderr
    assert image_io.read_header(tmp_path / "o" / "micrograph_denoised.mrc").mode == 12


def test_header_other_programs_write_is_denoised(tiny_model, clean_mrc, tmp_path):
    """A RELION-3.1-style stack: no 'MAP ' id, stamp or version; one warning, then work."""
    src = clean_mrc("particles.mrcs", (3, 64, 64), stack=True)
    raw = bytearray(src.read_bytes())
    raw[208:216] = b"\0" * 8
    raw[108:112] = b"\0" * 4
    old = tmp_path / "old.mrcs"
    old.write_bytes(bytes(raw))
    result = _apply(tiny_model, tmp_path / "o", old)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("cryoem-denoise: warning: ")
    assert "lacks the 'MAP ' id" in warnings[0]
    assert image_io.read_header(tmp_path / "o" / "old_denoised.mrcs").shape == (3, 64, 64)


def test_stale_part_files_of_a_killed_run_are_removed(tiny_model, inputs, tmp_path):
    folder, image, *_ = inputs
    out = tmp_path / "o"
    out.mkdir()
    stale = out / ".micrograph_denoised.mrc.k1ll3d00.part"
    stale.write_bytes(b"\0" * 4096)
    other = out / ".unrelated.mrc.abcdefgh.part"
    other.write_bytes(b"\0")
    assert _apply(tiny_model, out, image).exit_code == 0
    assert not stale.exists() and other.exists()


def test_shard_auto_reads_the_cluster_job_array():
    parse = apply_files.parse_shard
    assert parse("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    # --array=1-8: ids from 1
    assert parse("auto", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
                          "SLURM_ARRAY_TASK_COUNT": "8"}) == (0, 8)
    assert parse("auto", {"SGE_TASK_ID": "4", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "4"}) \
        == (3, 4)
    assert parse("AUTO", {"LSB_JOBINDEX": "2", "LSB_JOBINDEX_END": "5"}) == (1, 5)
    with pytest.raises(ConfigError, match="needs a cluster job array"):
        parse("auto", {})
    with pytest.raises(ConfigError, match="outside its array"):
        parse("auto", {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "8"})


@pytest.mark.slow
def test_shards_in_parallel_processes_equal_one_run(tiny_model, tmp_path, clean_mrc):
    """Four shards run as four processes (as a job array would, --shard auto) write, together,
    exactly the files of one unsharded run, byte for byte."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(7):
        clean_mrc(f"in/m{i}.mrc", (96, 80), seed=i)
    common = ["-m", "cryoem_denoise", "apply", str(folder), "--model", str(tiny_model),
              "--tile", "64", "--overlap", "16", "-q"]
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    procs = [subprocess.Popen([sys.executable, *common, "--out", str(tmp_path / "sharded"),
                               "--shard", "auto", "--skip-existing"],
                              env={**os.environ, "SLURM_ARRAY_TASK_ID": str(k),
                                   "SLURM_ARRAY_TASK_COUNT": "4"},
                              stderr=subprocess.PIPE, text=True) for k in range(4)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    names = sorted(p.name for p in (tmp_path / "one").iterdir() if p.suffix == ".mrc")
    assert names == sorted(p.name for p in (tmp_path / "sharded").iterdir() if p.suffix == ".mrc")
    assert len(names) == 7
    # each shard's report is its own; the unsharded run has one
    assert (tmp_path / "one" / "report.html").is_file()
    assert sorted(p.name for p in (tmp_path / "sharded").glob("report*.html")) == [
        f"report_shard{k}of4.html" for k in range(4)]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes()
