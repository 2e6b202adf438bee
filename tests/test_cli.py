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
    assert result.exit_code == 2 and "valid:    yes" in result.output


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
