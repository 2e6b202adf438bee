import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cryoem_denoise.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_info_shows_the_facts(make_mrc):
    path = make_mrc(np.arange(32 * 24, dtype=np.float32).reshape(24, 32), voxel_size=1.06)
    result = run("info", path)
    assert result.exit_code == 0, result.output
    assert "single image, 32 x 24 pixels" in result.output
    assert "mode:     2 (float32)" in result.output
    assert "1.06 x 1.06 A" in result.output
    assert "valid:    yes" in result.output


def test_info_json_for_a_stack(make_mrc):
    path = make_mrc(np.random.default_rng(0).random((5, 16, 16)).astype(np.float32), "p.mrcs",
                    stack=True)
    result = run("info", "--json", path)
    record = json.loads(result.output)
    assert record["kind"] == "stack" and record["shape"] == [5, 16, 16] and record["valid"]


def test_info_on_real_micrograph(sample_files):
    result = run("info", sample_files["epu2.9_example.mrc"])
    assert result.exit_code == 0
    assert "4096 x 4096" in result.output and "FEI2" in result.output and "uint16" in result.output


def _bad_inputs(make_mrc, tmp_path):
    good = make_mrc(np.arange(256, dtype=np.float32).reshape(16, 16), "good.mrc")
    (tmp_path / "text.mrc").write_text("not an mrc\n" * 200)
    (tmp_path / "trunc.mrc").write_bytes(good.read_bytes()[:-64])
    nan = np.ones((16, 16), np.float32)
    nan[2, 2] = np.nan
    return {
        "text.mrc": (tmp_path / "text.mrc", "not an MRC file"),
        "trunc.mrc": (tmp_path / "trunc.mrc", "truncated"),
        "complex.mrc": (make_mrc(np.zeros((16, 16), np.complex64), "complex.mrc"), "complex"),
        "nan.mrc": (make_mrc(nan, "nan.mrc"), "non-finite"),
        "const.mrc": (make_mrc(np.full((16, 16), 2.0, np.float32), "const.mrc"), "constant image"),
        "one.mrc": (make_mrc(np.zeros((1, 1), np.float32), "one.mrc"), "1x1 pixels"),
        "empty.mrc": (make_mrc(np.zeros((0, 16), np.float32), "empty.mrc"), "empty image"),
        "dir": (tmp_path, "is a directory"),
        "missing": (tmp_path / "missing.mrc", "no such file"),
    }


@pytest.mark.parametrize("case", ["text.mrc", "trunc.mrc", "complex.mrc", "nan.mrc", "const.mrc",
                                  "one.mrc", "empty.mrc", "dir", "missing"])
def test_bad_input_is_one_line_exit_2(make_mrc, tmp_path, case):
    path, message = _bad_inputs(make_mrc, tmp_path)[case]
    result = run("info", path)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("cryoem-denoise: error:")]
    assert len(errors) == 1 and str(path) in errors[0] and message in errors[0]
    assert "Traceback" not in result.output


def test_good_files_still_shown_beside_bad(make_mrc, tmp_path):
    good = make_mrc(np.arange(256, dtype=np.float32).reshape(16, 16), "good.mrc")
    result = run("info", tmp_path / "missing.mrc", good)
    assert result.exit_code == 3 and "valid:    yes" in result.output
    assert run("info", tmp_path / "missing.mrc").exit_code == 2  # none could be shown


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cryoem_denoise", "--debug", "info",
                           str(tmp_path / "missing.mrc")], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "cryoem_denoise", "info",
                           str(tmp_path / "missing.mrc")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_fetch_list_and_help():
    result = run("fetch", "--list")
    assert result.exit_code == 0 and "epu2.9_example.mrc" in result.output and "BSD-3" in result.output
    assert run("--help").exit_code == 0


def test_fetch_unknown_name_is_one_line(tmp_path):
    result = run("fetch", "--cache", tmp_path, "nope.mrc")
    assert result.exit_code == 2 and "unknown sample 'nope.mrc'" in result.output


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cryoem_denoise", *map(str, args)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("args,message", [
    (["info"], "info: missing argument 'FILES...'"),
    (["info", "--nope", "x"], "info: no such option '--nope'"),
    (["apply", "x"], "apply: missing option '--out'"),
    (["apply", "x", "--out", "o", "--tile", "big"], "apply: invalid value for '--tile'"),
    (["frobnicate"], "no such command 'frobnicate'"),
    (["evaluate", "x", "--out", "o", "--jobs", "two"], "evaluate: invalid value for '--jobs'"),
])
def test_usage_errors_are_one_line(args, message):
    proc = _cli(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryoem-denoise: error: "), lines
    assert message in lines[0] and "--help" in lines[0]


def test_info_tiff_and_placeholder_pixel_size(tmp_path, make_mrc):
    import tifffile

    tifffile.imwrite(tmp_path / "m.tif", np.arange(32 * 24, dtype=np.uint16).reshape(24, 32))
    result = run("info", tmp_path / "m.tif")
    assert result.exit_code == 0, result.output
    assert "format:   TIFF (uint16)" in result.output and "voxel:    unknown" in result.output
    path = make_mrc(np.arange(256, dtype=np.float32).reshape(16, 16), voxel_size=1.0)
    result = run("info", path)
    assert "1 x 1 A (looks like a placeholder" in result.output
    assert json.loads(run("info", "--json", path).output)["pixel_size_placeholder"] is True


def test_info_prints_nothing_but_the_error_for_bad_pixels(make_mrc):
    nan = np.ones((16, 16), np.float32)
    nan[1, 1] = np.nan
    result = run("info", make_mrc(nan, "nan.mrc"))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "non-finite" in result.stderr


@pytest.mark.slow
def test_evaluate_and_fit_read_tiff(tmp_path):
    import tifffile
    from scipy.ndimage import gaussian_filter

    data = gaussian_filter(np.random.default_rng(0).normal(0, 1, (6, 64, 64)), (0, 2, 2))
    tifffile.imwrite(tmp_path / "clean.tif", (data * 1000 + 3000).astype(np.uint16),
                     photometric="minisblack")
    result = run("evaluate", tmp_path / "clean.tif", "--out", tmp_path / "ev", "--methods",
                 "gaussian,noisy", "--sigma", "30", "-q")
    assert result.exit_code == 0, result.output
    assert "clean.tif[1]" in (tmp_path / "ev" / "results.json").read_text()
    result = run("fit", tmp_path / "clean.tif", "--tiny", "--steps", "2", "--tile", "64",
                 "--out", tmp_path / "model", "-q", "--validation-fraction", "0")
    assert result.exit_code == 0, result.output


def test_unforeseen_os_errors_are_one_line(make_mrc, tmp_path, monkeypatch):
    """An OS error no command foresaw (here EIO while reading) is one line naming the file
    and what to do; --debug shows the traceback."""
    import errno

    from cryoem_denoise.io import image_io

    good = make_mrc(np.ones((16, 16), np.float32), "good.mrc")

    def broken(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(image_io, "find_image_files", broken)
    result = run("apply", good, "--out", tmp_path / "o")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("cryoem-denoise: error: ") and "good.mrc" in lines[0]
    assert "input/output error" in lines[0] and "run again" in lines[0]
    assert not (tmp_path / "o").exists()


def test_names_that_are_not_utf8_are_printed_escaped(tmp_path):
    """A file name with invalid UTF-8 bytes, printed to a strict ASCII stream: escaped."""
    import os

    name = os.fsdecode(b"bad\xffname.mrc")
    path = tmp_path / name
    path.write_bytes(b"garbage" * 100)
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict", "LC_ALL": "C"}
    proc = subprocess.run([sys.executable, "-m", "cryoem_denoise", "info", os.fsencode(path)],
                          capture_output=True, env=env)
    err = proc.stderr.decode("ascii")
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "\\xff" in err and "not an MRC file" in err
