import gzip

import mrcfile
import numpy as np
import pytest

from cryoem_denoise import mrc
from cryoem_denoise.errors import InputError, OutputError


@pytest.mark.parametrize("dtype,mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2),
                                        (np.uint16, 6), (np.float16, 12)])
def test_reads_every_supported_mode(make_mrc, dtype, mode):
    data = (np.arange(16 * 12).reshape(12, 16) % 100).astype(dtype)
    path = make_mrc(data, voxel_size=(1.25, 1.25, 1.0))
    sections, header = mrc.read_sections(path)
    assert header.mode == mode
    assert header.shape == (1, 12, 16) and header.kind == "image"
    assert header.voxel_size[:2] == (1.25, 1.25)
    np.testing.assert_array_equal(sections[0], data)


def test_stack_volume_and_gzip(make_mrc, tmp_path):
    data = np.random.default_rng(0).random((3, 10, 9)).astype(np.float32)
    stack = make_mrc(data, "p.mrcs", stack=True)
    volume = make_mrc(data, "v.mrc")
    assert mrc.read_header(stack).kind == "stack"
    assert mrc.read_header(volume).kind == "volume"
    gz = tmp_path / "v.mrc.gz"
    gz.write_bytes(gzip.compress(volume.read_bytes()))
    sections, header = mrc.read_sections(gz)
    assert header.compression == "gzip" and header.shape == (3, 10, 9)
    np.testing.assert_array_equal(sections, data)


def test_fei_extended_header(sample_files):
    header = mrc.read_header(sample_files["fei-extended.mrc"])
    assert header.exttyp == "FEI1" and header.extended_header_bytes > 0
    assert header.shape == (1, 3838, 3710)
    assert header.pixel_size == pytest.approx(0.8538, abs=1e-4)
    with mrc.open_sections(sample_files["epu2.9_example.mrc"]) as (sections, h2):
        assert h2.exttyp == "FEI2" and sections.shape == (1, 4096, 4096)
        assert sections.dtype == np.uint16


@pytest.mark.parametrize("case,message", [
    ("text", "not an MRC file"),
    ("empty_file", "empty file (0 bytes)"),
    ("truncated", "truncated"),
    ("complex", "complex data"),
    ("tiny", "1x1 pixels"),
    ("zero", "empty image"),
    ("missing", "no such file"),
    ("directory", "is a directory"),
])
def test_bad_files_raise_one_line_input_error(make_mrc, tmp_path, case, message):
    good = make_mrc(np.ones((16, 16), np.float32), "good.mrc")
    path = tmp_path / f"{case}.mrc"
    if case == "text":
        path.write_text("this is not an image\n" * 100)
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:-10])
    elif case == "complex":
        path = make_mrc(np.zeros((16, 16), np.complex64), "complex.mrc")
    elif case == "tiny":
        path = make_mrc(np.zeros((1, 1), np.float32), "tiny.mrc")
    elif case == "zero":
        path = make_mrc(np.zeros((0, 16), np.float32), "zero.mrc")
    elif case == "directory":
        path = tmp_path
    with pytest.raises(InputError) as err:
        mrc.read_header(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_file(make_mrc, monkeypatch):
    path = make_mrc(np.ones((16, 16), np.float32))
    # chmod 0 does not stop root (CI runs as root), so the permission check is simulated
    monkeypatch.setattr(mrc.os, "access", lambda p, mode: False)
    with pytest.raises(InputError, match="permission denied"):
        mrc.read_header(path)


def test_pixel_checks():
    nan = np.ones((16, 16), np.float32)
    nan[3, 4] = np.nan
    with pytest.raises(InputError, match="1 non-finite"):
        mrc.check_section(nan)
    inf = np.ones((16, 16), np.float32)
    inf[0, 0] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        mrc.check_sections(np.stack([np.arange(256.0).reshape(16, 16), inf]))
    with pytest.raises(InputError, match="constant image"):
        mrc.check_section(np.full((16, 16), 3.0))
    mrc.check_section(np.arange(256.0).reshape(16, 16))


def test_pixel_statistics_match_numpy():
    data = np.random.default_rng(1).normal(5, 2, (7, 33, 31)).astype(np.float32)
    stats = mrc.pixel_statistics(data)
    assert stats["min"] == pytest.approx(data.min()) and stats["max"] == pytest.approx(data.max())
    assert stats["mean"] == pytest.approx(data.mean(dtype=np.float64), rel=1e-6)
    assert stats["std"] == pytest.approx(data.std(dtype=np.float64), rel=1e-5)
    assert stats["nonfinite"] == 0


def test_write_keeps_voxel_size_and_refuses_clobber(make_mrc, tmp_path):
    src = make_mrc(np.arange(256, dtype=np.float32).reshape(16, 16), "in.mrc", voxel_size=0.667)
    sections, header = mrc.read_sections(src)
    out = tmp_path / "out.mrc"
    mrc.write_mrc(out, sections * 2, voxel_size=header.voxel_size, origin=header.origin)
    with mrcfile.open(out) as m:
        assert m.data.dtype == np.float32 and m.data.shape == (16, 16)
        assert float(m.voxel_size.x) == pytest.approx(0.667, abs=1e-6)
        np.testing.assert_array_equal(m.data, sections[0] * 2)
    with pytest.raises(OutputError, match="already exists"):
        mrc.write_mrc(out, sections)
    mrc.write_mrc(out, sections, overwrite=True)
    with pytest.raises(OutputError, match="over an input"):
        mrc.write_mrc(src, sections, overwrite=True, protected=[src])
    assert np.array_equal(mrc.read_sections(src)[0], sections)


def test_write_float16_and_stack(tmp_path):
    data = np.random.default_rng(2).random((4, 16, 16)).astype(np.float32)
    out = tmp_path / "s.mrcs"
    mrc.write_mrc(out, data, dtype="float16")
    header = mrc.read_header(out)
    assert header.mode == 12 and header.kind == "stack"
    with pytest.raises(OutputError, match="float16 range"):
        mrc.write_mrc(tmp_path / "big.mrc", data * 1e6, dtype="float16")
    with pytest.raises(OutputError, match="unsupported output format"):
        mrc.write_mrc(tmp_path / "x.mrc", data, dtype="int8")
    assert not (tmp_path / "big.mrc").exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_new(path, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mrc.mrcfile, "new_mmap", broken_new)
    out = tmp_path / "out.mrc"
    with pytest.raises(OutputError, match="no space left"):
        mrc.write_mrc(out, np.ones((16, 16), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_streaming_write_leaves_nothing(tmp_path):
    out = tmp_path / "stack.mrcs"
    with pytest.raises(RuntimeError):
        with mrc.create_mrc(out, (3, 16, 16)) as data:
            data[0] = 1.0
            raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []
    with mrc.create_mrc(out, (3, 16, 16), voxel_size=(2.0, 2.0, 2.0)) as data:
        data[:] = np.arange(3, dtype=np.float32)[:, None, None]
    sections, header = mrc.read_sections(out)
    assert header.kind == "stack" and header.voxel_size[0] == 2.0 and sections[2, 0, 0] == 2
