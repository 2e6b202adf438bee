"""A corpus of bad files and options: each gets exit status 2, exactly one line on stderr
naming the file (or option) and the problem, and leaves no file behind.

Plus the faults of real runs: a full disk (a small tmpfs, when the tests run as root), a run
killed while writing (its temporary file is removed by the next run), and a failing file in
a folder that must not stop the others.
"""

import bz2
import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import mrcfile
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from cryoem_denoise.io import mrc
from cryoem_denoise.cli import cli

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line(result, *fragments, exit_code=2):
    """Exit 2 (3: some inputs failed, others done) and exactly one ``cryoem-denoise: error:``
    line on stderr with ``fragments``."""
    lines = error_lines(result)
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1, lines
    assert lines[0].startswith("cryoem-denoise: error: "), lines
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- building bad files --------------------------------------------------------------------
def _mrc_bytes(data, stack=False, voxel=1.5):
    path = "/dev/shm/_corpus.mrc" if os.path.isdir("/dev/shm") else "_corpus.mrc"
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data))
        if stack:
            m.set_image_stack()
        m.voxel_size = voxel
    raw = bytearray(open(path, "rb").read())
    os.unlink(path)
    return raw


def _good():
    return np.random.default_rng(0).random((16, 16)).astype(np.float32)


def _strip_ids(raw):
    """A header as older writers leave it: no 'MAP ' id, machine stamp or version."""
    raw = bytearray(raw)
    raw[208:216] = b"\0" * 8
    raw[108:112] = b"\0" * 4
    return raw


def _set_int(raw, offset, value):
    raw = bytearray(raw)
    raw[offset:offset + 4] = int(value).to_bytes(4, "little", signed=True)
    return raw


def _tiff(path, data, **kw):
    tifffile.imwrite(path, data, **kw)
    return path


def _write(path, content):
    path.write_bytes(bytes(content))
    return path


def _nan_stack():
    data = np.random.default_rng(1).random((3, 16, 16)).astype(np.float32)
    data[1, 4, 4] = np.nan
    return data


def _two_size_tiff(path):
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((16, 16), np.uint16) + np.arange(16, dtype=np.uint16))
        tw.write(np.zeros((24, 20), np.uint16) + np.arange(20, dtype=np.uint16))
    return path


def _loop(tmp):
    a, b = tmp / "loop_a.mrc", tmp / "loop_b.mrc"
    os.symlink(b, a)
    os.symlink(a, b)
    return a


def _fifo(tmp):
    path = tmp / "pipe.mrc"
    os.mkfifo(path)
    return path


#: name → (builder(tmp_path) → path, fragment of the message)
FILE_CASES = {
    "text": (lambda t: _write(t / "text.mrc", b"not an mrc\n" * 200), "not an MRC file"),
    "empty file": (lambda t: _write(t / "empty.mrc", b""), "empty file (0 bytes)"),
    "short file": (lambda t: _write(t / "short.mrc", b"\1" * 100),
                   "shorter than an MRC header"),
    "truncated": (lambda t: _write(t / "trunc.mrc", _mrc_bytes(_good())[:-64]), "truncated"),
    "truncated, old header": (lambda t: _write(t / "trunc_old.mrcs",
                                               _strip_ids(_mrc_bytes(_good()))[:-64]),
                              "truncated"),
    "too long, old header": (lambda t: _write(t / "long_old.mrcs",
                                              _strip_ids(_mrc_bytes(_good())) + b"\0" * 40),
                             "header describes"),
    "huge dimensions": (lambda t: _write(t / "huge.mrc", _set_int(_set_int(_set_int(
        _mrc_bytes(_good()), 0, 100000), 4, 100000), 8, 100000)), "promises"),
    "complex float": (lambda t: _write(t / "c64.mrc", _mrc_bytes(np.zeros((16, 16), np.complex64))),
                      "complex data (mode 4"),
    "complex int16": (lambda t: _write(t / "c16.mrc", _set_int(_mrc_bytes(_good()), 12, 3)),
                      "complex data (mode 3"),
    "unknown mode": (lambda t: _write(t / "mode7.mrc", _set_int(_mrc_bytes(_good()), 12, 7)),
                     "unsupported MRC mode"),
    "nan": (lambda t: _write(t / "nan.mrc", _mrc_bytes(np.where(np.eye(16) > 0, np.nan, 1.0)
                                                      .astype(np.float32))), "non-finite"),
    "inf": (lambda t: _write(t / "inf.mrc", _mrc_bytes(np.where(np.eye(16) > 0, np.inf, 1.0)
                                                      .astype(np.float32))), "non-finite"),
    "nan in section 1": (lambda t: _write(t / "nan_stack.mrcs", _mrc_bytes(_nan_stack(), True)),
                         "section 1: 1 non-finite"),
    "constant": (lambda t: _write(t / "const.mrc", _mrc_bytes(np.full((16, 16), 2.0, np.float32))),
                 "constant image"),
    "1x1": (lambda t: _write(t / "one.mrc", _mrc_bytes(np.zeros((1, 1), np.float32))),
            "1x1 pixels"),
    "0 pixels": (lambda t: _write(t / "zero.mrc", _mrc_bytes(np.zeros((0, 16), np.float32))),
                 "empty image"),
    "directory": (lambda t: (t / "folder.mrc").mkdir() or t / "folder.mrc", "is a directory"),
    "missing": (lambda t: t / "missing.mrc", "no such file"),
    "symlink loop": (_loop, "symbolic link loop"),
    "broken symlink": (lambda t: os.symlink(t / "gone.mrc", t / "broken.mrc") or t / "broken.mrc",
                       "broken symbolic link"),
    "fifo": (_fifo, "not a regular file"),
    "path through a file": (lambda t: _write(t / "plain.mrc", _mrc_bytes(_good())) / "x.mrc",
                            "not a folder"),
    "gzip truncated": (lambda t: _write(t / "cut.mrc.gz", gzip.compress(bytes(_mrc_bytes(_good())))[:-30]),
                       "truncated"),
    "gzip huge dimensions": (lambda t: _write(t / "huge.mrc.gz", gzip.compress(bytes(_set_int(
        _mrc_bytes(_good()), 0, 100000)))), "the header promises"),
    "bzip2 garbage": (lambda t: _write(t / "junk.mrc.bz2", bz2.compress(b"junk" * 400)),
                      "not an MRC file"),
    "tiff rgb": (lambda t: _tiff(t / "rgb.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb"),
                 "colour image"),
    "tiff truncated": (lambda t: _write(t / "cut.tif", open(_tiff(t / "full.tif", np.ones(
        (64, 64), np.float32)), "rb").read()[:2000]), "truncated"),
    "tiff garbage": (lambda t: _write(t / "junk.tif", b"II*\0" + b"\xff" * 300), "TIFF"),
    "tiff complex": (lambda t: _tiff(t / "complex.tif", np.zeros((16, 16), np.complex64)),
                     "complex data"),
    "tiff 1-bit": (lambda t: _tiff(t / "bits.tif", np.eye(16, dtype=bool)), "1-bit"),
    "tiff pages of two sizes": (lambda t: _two_size_tiff(t / "two.tif"), "different sizes"),
    "tiff 4x4": (lambda t: _tiff(t / "small.tif", np.arange(16, dtype=np.uint16).reshape(4, 4)),
                 "at least 8x8"),
    "tiff constant": (lambda t: _tiff(t / "flat.tif", np.full((3, 16, 16), 7, np.uint16),
                                      photometric="minisblack"),
                      "constant image"),
    "png colour": (lambda t: Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(t / "rgb.png")
                   or t / "rgb.png", "colour image"),
    "png garbage": (lambda t: _write(t / "junk.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100), "PNG"),
    "non-ascii name": (lambda t: _write(t / "Ångström_μ-bad.mrc", b"x" * 2000), "Ångström_μ-bad.mrc"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_file_info(tmp_path, case):
    build, message = FILE_CASES[case]
    path = build(tmp_path)
    before = files_under(tmp_path)
    result = run("info", path)
    assert_one_line(result, path, message)
    assert result.stdout == ""  # nothing printed before (or beside) the error
    assert files_under(tmp_path) == before


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path / "locked.mrc", _mrc_bytes(_good()))
    path.chmod(0)
    try:
        assert_one_line(run("info", path), path, "permission denied")
    finally:
        path.chmod(0o644)


def test_unreadable_file_as_root_is_reported(tmp_path, monkeypatch):
    """Root is not stopped by permissions; the check is simulated to show the message."""
    path = _write(tmp_path / "locked.mrc", _mrc_bytes(_good()))
    monkeypatch.setattr(mrc.os, "access", lambda p, mode: False)
    assert_one_line(run("info", path), path, "permission denied")


# -- options and inputs of apply, evaluate ------------------------------------------------
@pytest.fixture
def good_mrc(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    y, x = np.mgrid[0:64, 0:64]
    data = (np.sin(x / 5.0) * np.cos(y / 7.0) * 50 + 100).astype(np.float32)
    return _write(folder / "good.mrc", _mrc_bytes(data))


def _empty_folder(t):
    (t / "empty").mkdir()
    (t / "empty" / "notes.txt").write_text("no images here")
    return t / "empty"


APPLY_CASES = {
    # name: (extra args, (fragments...))  -- {in}: the good input, {out}: the output folder
    "empty glob": (["{tmp}/nothing*.mrc"], ("pattern matches no files",)),
    "folder without images": (["{empty}"], ("folder holds no MRC files or other images",)),
    "missing input": (["{tmp}/absent.mrc"], ("absent.mrc", "no such file")),
    "negative sigma": (["{in}", "--sigma", "-5"], ("noise sigma must be in",)),
    "nan sigma": (["{in}", "--sigma", "nan"], ("noise sigma must be in",)),
    "sigma not a number": (["{in}", "--sigma", "abc"], ("apply:", "--sigma", "abc")),
    "huge sigma": (["{in}", "--sigma", "1e9"], ("noise sigma must be in",)),
    "tile zero": (["{in}", "--tile", "0"], ("--tile", ">= 8")),
    "tile negative": (["{in}", "--tile", "-256"], ("--tile", ">= 8")),
    "tile not a multiple": (["{in}", "--tile", "100"], ("tile 100 must be a multiple",)),
    "overlap too large": (["{in}", "--overlap", "200"], ("--overlap must be between",)),
    "batch zero": (["{in}", "--batch-size", "0"], ("--batch-size", ">= 1")),
    "negative seed": (["{in}", "--sigma", "30", "--seed", "-1"], ("--seed", ">= 0")),
    "batch not a number": (["{in}", "--batch-size", "x"], ("--batch-size",)),
    "bad shard": (["{in}", "--shard", "3/2"], ("--shard K/N needs",)),
    "bad format": (["{in}", "--format", "bmp"], ("--format must be one of",)),
    "bad dtype": (["{in}", "--dtype", "int8"], ("--dtype", "int8")),
    "pixel size negative": (["{in}", "--pixel-size", "-1"], ("--pixel-size must be",)),
    "overwrite and skip": (["{in}", "--overwrite", "--skip-existing"], ("choose one of",)),
    "unknown option": (["{in}", "--frobnicate"], ("no such option", "--frobnicate")),
    "out is a file": (["{in}", "--out", "{in}"], ("--out", "is a file")),
    "png of a stack": (["{stack}", "--format", "png"], ("a PNG holds one image",)),
    "model folder missing": (["{in}", "--model", "{tmp}/no_model"], ("model folder does not exist",)),
    "model folder empty": (["{in}", "--model", "{modelcopy}/empty"], ("not a model folder",)),
    "model config corrupt": (["{in}", "--model", "{modelcopy}/badconfig"], ("config.json",)),
    "model weights missing": (["{in}", "--model", "{modelcopy}/noweights"], ("generator.weights.h5",)),
    "model weights truncated": (["{in}", "--model", "{modelcopy}/cutweights"], ("weights",)),
}


def _model_copies(tiny_model, root):
    root.mkdir()
    (root / "empty").mkdir()
    for name in ("badconfig", "noweights", "cutweights"):
        shutil.copytree(tiny_model, root / name, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (root / "badconfig" / "config.json").write_text("{ this is not json")
    (root / "noweights" / "generator.weights.h5").unlink()
    w = root / "cutweights" / "generator.weights.h5"
    w.write_bytes(w.read_bytes()[:3000])
    return root


@pytest.mark.parametrize("case", sorted(APPLY_CASES))
def test_bad_apply_options(tiny_model, tmp_path, good_mrc, case):
    args, fragments = APPLY_CASES[case]
    out = tmp_path / "out"
    places = {"in": good_mrc, "tmp": tmp_path, "out": out}
    if "{empty}" in " ".join(args):
        places["empty"] = _empty_folder(tmp_path)
    if "{stack}" in " ".join(args):
        (tmp_path / "stacks").mkdir()
        data = np.random.default_rng(2).random((2, 32, 32)).astype(np.float32)
        stack = _write(tmp_path / "stacks" / "s.mrcs", _mrc_bytes(data, stack=True))
        places["stack"] = stack
    if "{modelcopy}" in " ".join(args):
        places["modelcopy"] = _model_copies(tiny_model, tmp_path / "models")
    args = [a.format(**places) for a in args]
    cmd = ["apply", "-q", "--tile", "64", "--overlap", "16"]
    if "--model" not in args:
        cmd += ["--model", tiny_model]
    if "--out" not in args:
        cmd += ["--out", out]
    cmd = [a for a in cmd if not (case.startswith("tile") and a in ("--tile", "64"))]
    if case == "overlap too large":
        cmd = [a for a in cmd if a not in ("--overlap", "16")]
    before = files_under(tmp_path)
    result = run(*cmd, *args)
    assert_one_line(result, *fragments)
    assert not out.exists() or files_under(out) == []
    assert files_under(tmp_path) == before


EVALUATE_CASES = {
    "unknown method": (["--methods", "gan,magic"], ("unknown method 'magic'",)),
    "sigma list not numbers": (["--sigma", "ten,20"], ("cannot read 'ten,20'",)),
    "sigma zero": (["--sigma", "0"], ("noise sigma must be in",)),
    "crop too small": (["--crop", "4"], ("--crop", ">= 16")),
    "no images": (["--max-images", "0"], ("--max-images", ">= 1")),
    "no jobs": (["--jobs", "0"], ("--jobs", ">= 1")),
    "negative seed": (["--seed", "-2"], ("--seed", ">= 0")),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_bad_evaluate_options(tmp_path, good_mrc, case):
    args, fragments = EVALUATE_CASES[case]
    out = tmp_path / "ev"
    result = run("evaluate", good_mrc, "--out", out, "--methods", "noisy,gaussian", *args)
    assert_one_line(result, *fragments)
    assert not out.exists()


def test_evaluate_bad_file_alone_is_one_line(tmp_path):
    bad = _write(tmp_path / "nan.mrc", _mrc_bytes(np.where(np.eye(16) > 0, np.nan, 1.0)
                                                  .astype(np.float32)))
    out = tmp_path / "ev"
    result = run("evaluate", bad, "--out", out, "--methods", "noisy,gaussian", "-q")
    assert_one_line(result, bad, "non-finite")
    assert not out.exists()


def test_evaluate_into_a_folder_it_cannot_create(tmp_path, good_mrc):
    blocker = _write(tmp_path / "afile", b"x")
    result = run("evaluate", good_mrc, "--out", blocker / "ev", "--methods", "noisy,gaussian")
    assert_one_line(result, "cannot create the output folder")


@contextlib.contextmanager
def tmpfs(path, size, options=""):
    """Mount a tmpfs of ``size`` at ``path`` (root only) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(not IS_ROOT or not shutil.which("mount"), reason="mounting needs root")
def test_evaluate_into_a_read_only_folder(tmp_path, good_mrc):
    with tmpfs(tmp_path / "ro", "1m", ",ro") as ro:
        result = run("evaluate", good_mrc, "--out", ro, "--methods", "noisy,gaussian")
        assert_one_line(result, str(ro), "not writable", "read-only file system")
        result = run("evaluate", good_mrc, "--out", ro / "sub", "--methods", "noisy,gaussian")
        assert_one_line(result, "cannot create the output folder", "read-only file system")


# -- faults of real runs -------------------------------------------------------------------
@pytest.mark.skipif(not IS_ROOT or not shutil.which("mount"), reason="mounting needs root")
@pytest.mark.parametrize("fmt", ["mrc", "tiff"])
def test_full_disk_is_one_line_and_leaves_nothing(tiny_model, tmp_path, fmt):
    """A 4 MiB output on a 1 MiB disk: `no space left`, exit 2, nothing left behind (the
    space is reserved before the memory map is written, so no SIGBUS)."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    big = _write(folder / "big.mrc", _mrc_bytes(rng.random((1024, 1024)).astype(np.float32)))
    small = _write(folder / "small.mrc", _mrc_bytes(rng.random((64, 64)).astype(np.float32)))
    with tmpfs(tmp_path / "full", "1m") as disk:
        result = run("apply", "--model", tiny_model, "--out", disk, "--tile", "64",
                     "--overlap", "16", "-q", "--format", fmt, big)
        assert_one_line(result, "big", "no space left on device")
        assert files_under(disk) == []
        # the library call too, and a small file beside the big one is still written
        result = run("apply", "--model", tiny_model, "--out", disk, "--tile", "64",
                     "--overlap", "16", "-q", "--format", fmt, big, small)
        assert_one_line(result, "no space left on device", exit_code=3)
        assert [f for f in files_under(disk) if not f.startswith("report")] == [
            f"small_denoised.{'mrc' if fmt == 'mrc' else 'tif'}"]


@pytest.mark.skipif(not IS_ROOT or not shutil.which("mount"), reason="mounting needs root")
def test_full_disk_library_write(tmp_path):
    from cryoem_denoise.errors import OutputError

    with tmpfs(tmp_path / "full", "256k") as disk:
        with pytest.raises(OutputError, match="no space left on device"):
            mrc.write_mrc(disk / "x.mrc", np.ones((512, 512), np.float32))
        assert files_under(disk) == []


def test_killed_run_leaves_part_that_the_next_run_removes(tmp_path):
    """SIGKILL in the middle of a write leaves a `.part`; writing the same output again
    removes it (a temporary file a live writer holds is never touched)."""
    out = tmp_path / "x.mrc"
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from cryoem_denoise.io import mrc
        with mrc.create_mrc({str(out)!r}, (64, 64)) as data:
            data[:] = 1.0
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".x.mrc.") and left[0].endswith(".part")
    # a temporary file held by a live writer (another run) is not removed
    from cryoem_denoise.io.atomic import atomic_output

    with atomic_output(tmp_path / "y.mrc") as held:
        held.write_bytes(b"in progress")
        mrc.write_mrc(out, np.ones((16, 16), np.float32))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted(["x.mrc", held.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mrc", "y.mrc"]


def test_one_bad_file_never_stops_the_others(tiny_model, tmp_path):
    """Non-ASCII names in paths and labels; a bad file among good ones is one line."""
    folder = tmp_path / "Ångström данные"
    folder.mkdir()
    rng = np.random.default_rng(3)
    _write(folder / "a_bad.mrc", b"garbage" * 300)
    _write(folder / "b_µ-good.mrc", _mrc_bytes(rng.random((48, 48)).astype(np.float32)))
    _write(folder / "c_nan.mrc", _mrc_bytes(np.where(np.eye(32) > 0, np.nan, 1.0).astype(np.float32)))
    _tiff(folder / "d_é.tif", (rng.random((2, 40, 40)) * 60000).astype(np.uint16))
    out = tmp_path / "sortie é"
    result = run("apply", "--model", tiny_model, "--out", out, "--tile", "64", "--overlap", "16",
                 "-q", folder)
    assert result.exit_code == 3  # some files failed, the others are written
    lines = error_lines(result)
    assert len(lines) == 2 and "a_bad.mrc" in lines[0] and "c_nan.mrc" in lines[1], lines
    assert files_under(out) == ["b_µ-good_denoised.mrc", "d_é_denoised.tif", "report.csv",
                                "report.html"]
    with mrcfile.open(out / "b_µ-good_denoised.mrc") as m:
        labels = [bytes(lbl).decode() for lbl in m.header.label[:int(m.header.nlabl)]]
    assert any(lbl.strip() == "denoised from b_u-good.mrc" for lbl in labels), labels  # ASCII



def test_sigterm_removes_the_temporary_file(tmp_path):
    """A run stopped with SIGTERM (a cluster's time limit) leaves no `.part` behind."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        import click
        from cryoem_denoise.cli import cli
        from cryoem_denoise.io import mrc

        @cli.command("_write_then_term")
        def _write_then_term():
            with mrc.create_mrc({str(tmp_path / "x.mrc")!r}, (64, 64)) as data:
                data[:] = 1.0
                os.kill(os.getpid(), signal.SIGTERM)
                data[:] = 2.0

        cli.main(["_write_then_term"], prog_name="cryoem-denoise")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 143 and proc.stderr.strip() == "cryoem-denoise: terminated"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["text", "empty file", "tiff rgb", "symlink loop"])
def test_bad_file_fit(tmp_path, case):
    """`fit` reads its inputs through the same code: the same one line, no model folder."""
    build, message = FILE_CASES[case]
    path = build(tmp_path)
    out = tmp_path / "model"
    before = files_under(tmp_path)
    result = run("fit", path, "--tiny", "--steps", "2", "--out", out, "-q")
    assert_one_line(result, path, message)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("args,fragments", [
    (["{text}"], ("text.mrc", "not an MRC file")),
    (["{tmp}/absent.cif"], ("absent.cif", "no such file")),
    (["{text}", "--n", "0"], ("--n", ">= 1")),
    (["{text}", "--seed", "-3"], ("--seed", ">= 0")),
    (["{text}", "--dose", "nan"], ("--dose", "not a finite number")),
    (["{text}", "--defocus", "a:b"], ("simulate:", "--defocus", "a:b")),
])
def test_bad_simulate(tmp_path, args, fragments):
    text = _write(tmp_path / "text.mrc", b"not an mrc\n" * 200)
    args = [a.format(text=text, tmp=tmp_path) for a in args]
    before = files_under(tmp_path)
    result = run("simulate", *args, "--out", tmp_path / "fields.mrcs", "-q")
    assert_one_line(result, *fragments)
    assert files_under(tmp_path) == before
