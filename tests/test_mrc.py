import gzip

import mrcfile
import numpy as np
import pytest

from cryoem_denoise.io import image_io, mrc
from cryoem_denoise.errors import InputError, OutputError


@pytest.mark.parametrize("dtype,mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2),
                                        (np.uint16, 6), (np.float16, 12)])
def test_reads_every_supported_mode(make_mrc, dtype, mode):
    data = (np.arange(16 * 12).reshape(12, 16) % 100).astype(dtype)
    path = make_mrc(data, voxel_size=(1.25, 1.25, 1.0))
    sections, header = image_io.read_sections(path)
    assert header.mode == mode
    assert header.shape == (1, 12, 16) and header.kind == "image"
    assert header.voxel_size[:2] == (1.25, 1.25)
    np.testing.assert_array_equal(sections[0], data)


def test_stack_volume_and_gzip(make_mrc, tmp_path):
    data = np.random.default_rng(0).random((3, 10, 9)).astype(np.float32)
    stack = make_mrc(data, "p.mrcs", stack=True)
    volume = make_mrc(data, "v.mrc")
    assert image_io.read_header(stack).kind == "stack"
    assert image_io.read_header(volume).kind == "volume"
    gz = tmp_path / "v.mrc.gz"
    gz.write_bytes(gzip.compress(volume.read_bytes()))
    sections, header = image_io.read_sections(gz)
    assert header.compression == "gzip" and header.shape == (3, 10, 9)
    np.testing.assert_array_equal(sections, data)


def test_fei_extended_header(sample_files):
    header = image_io.read_header(sample_files["fei-extended.mrc"])
    assert header.exttyp == "FEI1" and header.extended_header_bytes > 0
    assert header.shape == (1, 3838, 3710)
    assert header.pixel_size == pytest.approx(0.8538, abs=1e-4)
    with image_io.open_sections(sample_files["epu2.9_example.mrc"]) as (sections, h2):
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
        image_io.read_header(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_file(make_mrc, monkeypatch):
    path = make_mrc(np.ones((16, 16), np.float32))
    # chmod 0 does not stop root (CI runs as root), so the permission check is simulated
    monkeypatch.setattr(mrc.os, "access", lambda p, mode: False)
    with pytest.raises(InputError, match="permission denied"):
        image_io.read_header(path)


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
    sections, header = image_io.read_sections(src)
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
    assert np.array_equal(image_io.read_sections(src)[0], sections)


def test_write_float16_and_stack(tmp_path):
    data = np.random.default_rng(2).random((4, 16, 16)).astype(np.float32)
    out = tmp_path / "s.mrcs"
    mrc.write_mrc(out, data, dtype="float16")
    header = image_io.read_header(out)
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
    sections, header = image_io.read_sections(out)
    assert header.kind == "stack" and header.voxel_size[0] == 2.0 and sections[2, 0, 0] == 2


# -- headers as other programs write them ----------------------------------------------------
def _old_style(raw, stamp=b"\0\0\0\0"):
    """No 'MAP ' id and no version (as RELION 3.1 and older writers leave them)."""
    raw = bytearray(raw)
    raw[208:212] = b"\0" * 4
    raw[212:216] = stamp
    raw[108:112] = b"\0" * 4
    return bytes(raw)


def test_header_without_map_id_stamp_version_is_read_with_one_warning(make_mrc, tmp_path):
    data = np.random.default_rng(4).random((5, 24, 24)).astype(np.float32)
    src = make_mrc(data, "relion.mrcs", stack=True, voxel_size=1.1)
    old = tmp_path / "old.mrcs"
    old.write_bytes(_old_style(src.read_bytes()))
    with pytest.warns(mrc.InputWarning) as record:
        sections, header = image_io.read_sections(old)
    messages = [str(w.message) for w in record if issubclass(w.category, mrc.InputWarning)]
    assert len(messages) == 1 and "lacks the 'MAP ' id, a machine stamp and a version" in messages[0]
    assert "dimensions, mode and file size agree" in messages[0] and str(old) in messages[0]
    assert header.permissive and header.shape == (5, 24, 24) and header.kind == "stack"
    assert header.voxel_size[0] == pytest.approx(1.1, abs=1e-6)
    np.testing.assert_array_equal(sections, data)
    import warnings

    with warnings.catch_warnings():  # once per file and process, not on every read
        warnings.simplefilter("error", mrc.InputWarning)
        image_io.read_header(old)


def test_wrong_byte_order_stamp_is_named_and_read(make_mrc, tmp_path):
    data = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    src = make_mrc(data)
    raw = bytearray(src.read_bytes())
    raw[212:216] = bytes([0x11, 0x11, 0, 0])  # big-endian stamp on little-endian data
    path = tmp_path / "stamp.mrc"
    path.write_bytes(bytes(raw))
    with pytest.warns(mrc.InputWarning, match="machine stamp says big-endian, the file is "
                                              "little-endian"):
        sections, header = image_io.read_sections(path)
    assert header.mode == 2
    np.testing.assert_array_equal(sections[0], data)


def test_old_header_whose_size_disagrees_is_refused_with_the_reason(make_mrc, tmp_path):
    src = make_mrc(np.ones((16, 16), np.float32))
    short = tmp_path / "short.mrc"
    short.write_bytes(_old_style(src.read_bytes())[:-100])
    with pytest.raises(InputError, match="no 'MAP ' id.*truncated: 1,948 bytes, the header "
                                         "promises 2,048 \\(16x16x1 float32"):
        image_io.read_header(short)
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"\xff" * 3000)
    with pytest.raises(InputError, match="not an MRC file \\(no 'MAP ' id, and no byte order"):
        image_io.read_header(junk)


def test_big_endian_file_reads(tmp_path):
    data = np.arange(12 * 10, dtype=np.float32).reshape(10, 12)
    path = tmp_path / "be.mrc"
    with mrcfile.new(path) as m:
        m.set_data(data.astype(">f4"))
    sections, header = image_io.read_sections(path)
    assert not header.permissive
    np.testing.assert_array_equal(sections[0], data)


def test_labels_are_ascii(tmp_path):
    assert mrc.ascii_label("denoised from Ångström_é.mrc") == "denoised from Angstrom_e.mrc"
    assert mrc.ascii_label("données µm μ ø 日本") == "donnees um u o ??"
    out = tmp_path / "é.mrc"
    mrc.write_mrc(out, np.ones((16, 16), np.float32), label="from Ångström_日本.mrc")
    assert image_io.read_header(out).shape == (1, 16, 16)


def test_placeholder_pixel_size(make_mrc):
    header = image_io.read_header(make_mrc(np.ones((16, 16), np.float32), voxel_size=1.0))
    assert header.pixel_size_is_placeholder
    assert header.with_pixel_size(1.34).voxel_size[:2] == (1.34, 1.34)
    real = image_io.read_header(make_mrc(np.ones((16, 16), np.float32), "r.mrc", voxel_size=0.9))
    assert not real.pixel_size_is_placeholder
    assert real.with_pixel_size(1.34).voxel_size[0] == pytest.approx(0.9)


# -- TIFF and PNG --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.uint32])
def test_tiff_single_and_multipage(tmp_path, dtype):
    import tifffile

    data = (np.random.default_rng(5).random((3, 20, 24)) * 200).astype(dtype)
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, data[0])
    sections, header = image_io.read_sections(single)
    assert header.format == "tiff" and header.kind == "image" and header.shape == (1, 20, 24)
    np.testing.assert_array_equal(sections[0], data[0])
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, data, photometric="minisblack")
    sections, header = image_io.read_sections(stack)
    assert header.kind == "stack" and header.shape == (3, 20, 24) and header.dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(sections, data)
    pages = tmp_path / "pages.tif"  # written page by page, compressed, as cameras do
    with tifffile.TiffWriter(pages) as tw:
        for page in data:
            tw.write(page, compression="zlib", photometric="minisblack")
    np.testing.assert_array_equal(image_io.read_sections(pages)[0], data)


def test_tiff_and_png_written_and_read_back(tmp_path):
    from cryoem_denoise.io import image_io

    data = np.random.default_rng(6).random((2, 16, 16)).astype(np.float32) * 100
    image_io.write_image(tmp_path / "s.tif", data, fmt="tiff", voxel_size=(0.8, 0.8, 0.8),
                         kind="stack", label="from é.mrc")
    sections, header = image_io.read_sections(tmp_path / "s.tif")
    assert header.voxel_size[0] == pytest.approx(0.8) and header.kind == "stack"
    np.testing.assert_array_equal(sections, data)
    image_io.write_image(tmp_path / "h.tif", data, fmt="tiff", dtype="float16", kind="stack")
    assert image_io.read_header(tmp_path / "h.tif").dtype == "float16"
    image_io.write_image(tmp_path / "a.png", np.rint(data[0]), fmt="png", dtype="uint8",
                         voxel_size=(1.3, 1.3, 0))
    sections, header = image_io.read_sections(tmp_path / "a.png")
    assert header.format == "png" and header.dtype == "uint8" and header.pixel_size == pytest.approx(1.3)
    np.testing.assert_array_equal(sections[0], np.rint(data[0]))
    image_io.write_image(tmp_path / "b.png", data[0], fmt="png")  # floats: scaled to 16 bits
    sections, header = image_io.read_sections(tmp_path / "b.png")
    assert header.dtype == "uint16" and sections.max() == 65535 and sections.min() == 0
    with pytest.raises(OutputError, match="a PNG holds one image"):
        image_io.write_image(tmp_path / "c.png", data, fmt="png", kind="stack")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "h.tif", "s.tif"]


def test_find_image_files(tmp_path):
    from cryoem_denoise.io import image_io

    for name in ("b.mrc", "a.tif", "c.png", "d.txt", "e.mrcs.gz", "f.TIFF"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.name for p in image_io.find_image_files([tmp_path])]
    assert found == ["a.tif", "b.mrc", "e.mrcs.gz", "f.TIFF"]  # PNGs (previews) only by name
    assert [p.name for p in image_io.find_image_files([str(tmp_path / "*.png")])] == ["c.png"]
    with pytest.raises(InputError, match="pattern matches no files"):
        image_io.find_image_files([str(tmp_path / "zz*.mrc")])
    loop = tmp_path / "loop.mrc"
    loop.symlink_to(loop)
    assert image_io.find_image_files([loop]) == [loop]
    with pytest.raises(InputError, match="symbolic link loop"):
        image_io.read_header(loop)


def test_tiff_pages_written_one_by_one_uncompressed(tmp_path):
    import tifffile

    data = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    with tifffile.TiffWriter(tmp_path / "p.tif") as tw:
        for page in data:
            tw.write(page, photometric="minisblack")
    np.testing.assert_array_equal(image_io.read_sections(tmp_path / "p.tif")[0], data)


def test_gzip_of_several_members_is_read(make_mrc, tmp_path):
    """bgzip-style files: the trailer's size is the last member's only."""
    data = np.random.default_rng(8).random((2, 32, 32)).astype(np.float32)
    raw = make_mrc(data, "v.mrc").read_bytes()
    path = tmp_path / "multi.mrc.gz"
    path.write_bytes(gzip.compress(raw[:3000]) + gzip.compress(raw[3000:]))
    sections, header = image_io.read_sections(path)
    np.testing.assert_array_equal(sections, data)
