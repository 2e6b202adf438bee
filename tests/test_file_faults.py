"""Faults of files and file systems (issue 22): headers checked against the file's size,
folder entries that cannot be looked at, errors of the operating system and of the decoders,
names too long to write. Each is one :class:`InputError` (or :class:`OutputError`) line
naming the file, never a traceback and never a wrong result with exit status 0.
"""

import bz2
import errno
import gzip
import os
import struct
import warnings
import zlib

import mrcfile
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from cryoem_denoise.cli import cli
from cryoem_denoise.errors import InputError, OutputError
from cryoem_denoise.io import image_io, mrc, png, tiff


def _mrc(tmp_path, data, name="v.mrc", extended=None, **kw):
    path = tmp_path / name
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data))
        if extended is not None:
            m.set_extended_header(np.frombuffer(extended, dtype="V1"))
            m.header.exttyp = b"FEI1"
    return path


def _stack():
    return np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)


def _set_word(raw, offset, value):
    raw = bytearray(raw)
    struct.pack_into("<i", raw, offset, value)
    return bytes(raw)


def _write(path, content):
    path.write_bytes(bytes(content))
    return path


def _refused(path, *fragments):
    with pytest.raises(InputError) as err:
        image_io.read_sections(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def _one_line(result, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("cryoem-denoise: error: "), lines
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])


# -- MRC headers checked against the file ------------------------------------------------------
def test_nz_smaller_than_the_sections_in_the_file(tmp_path):
    raw = _mrc(tmp_path, _stack()).read_bytes()
    path = _write(tmp_path / "nz.mrc", _set_word(raw, 8, 2))
    _refused(path, "1,024 bytes more than the header declares", "the file holds 4,096",
             "describes 3,072", "1 more section than nz = 2", "refusing to guess")


def test_undeclared_extended_header(tmp_path):
    raw = _mrc(tmp_path, _stack()).read_bytes()
    path = _write(tmp_path / "ext.mrc", raw[:1024] + b"\x07" * 1024 + raw[1024:])
    _refused(path, "1,024 bytes more than the header declares",
             "an extended header that nsymbt = 0 does not declare", "more section")


def test_extended_header_longer_than_declared(tmp_path):
    raw = _mrc(tmp_path, _stack()[0], extended=b"\1" * 512).read_bytes()
    path = _write(tmp_path / "ext.mrc", raw[:1024 + 512] + b"\2" * 100 + raw[1024 + 512:])
    _refused(path, "100 bytes more", "an extended header longer than the 512 bytes nsymbt "
                                     "declares", "a 100-byte tail")


def test_tail_after_the_data(tmp_path):
    raw = _mrc(tmp_path, _stack()).read_bytes()
    path = _write(tmp_path / "tail.mrc", raw + b"abc")
    _refused(path, "3 bytes more than the header declares", "a 3-byte tail after the data")
    one = _write(tmp_path / "one.mrc", raw + b"a")
    _refused(one, "1 byte more than")


@pytest.mark.parametrize("compression", ["gzip", "bzip2"])
def test_compressed_file_with_extra_bytes(tmp_path, compression):
    raw = _mrc(tmp_path, _stack()).read_bytes()
    pack = gzip.compress if compression == "gzip" else bz2.compress
    ext = ".gz" if compression == "gzip" else ".bz2"
    path = _write(tmp_path / f"tail.mrc{ext}", pack(raw + b"abc"))
    _refused(path, f"the {compression} data hold 4,099", "3 bytes more")
    short = _write(tmp_path / f"short.mrc{ext}", pack(raw[:-10]))
    _refused(short, "truncated or wrong header", f"the {compression} data hold 4,086")
    good = _write(tmp_path / f"good.mrc{ext}", pack(raw))
    np.testing.assert_array_equal(image_io.read_sections(good)[0], _stack())


def test_negative_extended_header_length_has_its_own_message(tmp_path):
    raw = _mrc(tmp_path, _stack()).read_bytes()
    path = _write(tmp_path / "neg.mrc", _set_word(raw, 92, -1024))
    text = _refused(path, "invalid extended header length: nsymbt = -1,024 (negative)")
    assert "mode" not in text


def test_extended_header_longer_than_the_file(tmp_path):
    raw = _mrc(tmp_path, _stack()).read_bytes()
    path = _write(tmp_path / "huge.mrc", _set_word(raw, 92, 2**31 - 1))
    _refused(path, "invalid extended header length: nsymbt = 2,147,483,647 bytes",
             "the file holds only 3,072 after the 1,024-byte header")
    gz = _write(tmp_path / "huge.mrc.gz", gzip.compress(_set_word(raw, 92, 5000)))
    _refused(gz, "nsymbt = 5,000 bytes", "the gzip data hold only 3,072")


def test_declared_extended_header_is_skipped_exactly(tmp_path):
    data = _stack()
    path = _mrc(tmp_path, data, extended=bytes(range(256)) * 4)
    sections, header = image_io.read_sections(path)
    assert header.extended_header_bytes == 1024 and header.exttyp == "FEI1"
    np.testing.assert_array_equal(sections, data)


def test_old_header_with_extra_bytes_names_them(tmp_path):
    raw = bytearray(_mrc(tmp_path, _stack()).read_bytes())
    raw[208:216] = b"\0" * 8
    path = _write(tmp_path / "old.mrcs", bytes(raw) + b"\0" * 1024)
    _refused(path, "no 'MAP ' id", "header describes 4,096", "1 more section than nz = 3")


def test_sample_micrographs_with_fei_extended_headers_still_read(sample_files):
    for name in ("epu2.9_example.mrc", "fei-extended.mrc"):
        header = image_io.read_header(sample_files[name])
        assert header.exttyp in ("FEI1", "FEI2") and header.extended_header_bytes > 0
        assert header.file_bytes == 1024 + header.extended_header_bytes + \
            int(np.prod(header.shape)) * 2


# -- folder entries that cannot be looked at -----------------------------------------------------
def test_dangling_link_in_a_folder_is_returned_and_fails_with_one_line(tmp_path):
    good = _mrc(tmp_path, _stack(), "a_good.mrc")
    (tmp_path / "b_gone.mrc").symlink_to("/mnt/not-mounted/b.mrc")
    (tmp_path / "c_loop.mrc").symlink_to(tmp_path / "c_loop.mrc")
    (tmp_path / "notes.txt").symlink_to(tmp_path / "missing.txt")  # not an image name
    (tmp_path / "sub.mrc").mkdir()  # a sub-folder is not an entry to read
    found = image_io.find_image_files([tmp_path])
    assert [p.name for p in found] == ["a_good.mrc", "b_gone.mrc", "c_loop.mrc"]
    assert image_io.read_header(good).shape == (3, 16, 16)
    _refused(tmp_path / "b_gone.mrc",
             "broken symbolic link (to /mnt/not-mounted/b.mrc, which does not exist)")
    _refused(tmp_path / "c_loop.mrc", "symbolic link loop")
    _one_line(CliRunner().invoke(cli, ["info", str(tmp_path / "b_gone.mrc")]),
              tmp_path / "b_gone.mrc", "broken symbolic link")


def test_dangling_links_matched_by_a_pattern_are_returned(tmp_path):
    (tmp_path / "x.mrc").symlink_to(tmp_path / "nowhere.mrc")
    assert image_io.find_image_files([str(tmp_path / "*.mrc")]) == [tmp_path / "x.mrc"]


def _failing_stat(monkeypatch, target, code):
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(target):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)


@pytest.mark.parametrize("code,message", [
    (errno.EIO, "input/output error"),
    (errno.EACCES, "permission denied"),
    (errno.ELOOP, "symbolic link loop"),
    (errno.ESTALE, "cannot read (stale file handle)"),
])
def test_folder_entry_that_cannot_be_looked_at(tmp_path, monkeypatch, code, message):
    _mrc(tmp_path, _stack(), "a.mrc")
    bad = _mrc(tmp_path, _stack(), "b.mrc")
    _failing_stat(monkeypatch, bad, code)
    assert [p.name for p in image_io.find_image_files([tmp_path])] == ["a.mrc", "b.mrc"]
    _refused(bad, message)


def test_errors_while_reading_are_input_errors(tmp_path, monkeypatch):
    path = _mrc(tmp_path, _stack())
    real_open = open

    def failing_open(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise OSError(errno.EIO, "Input/output error", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    _refused(path, "input/output error")


def test_folder_that_cannot_be_listed(tmp_path, monkeypatch):
    def scandir(path):
        raise OSError(errno.EIO, "Input/output error", os.fspath(path))

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match="cannot list the folder \\(input/output error"):
        image_io.find_image_files([tmp_path])


def test_named_path_too_long_is_one_line(tmp_path):
    name = tmp_path / ("x" * 300 + ".mrc")
    with pytest.raises(InputError, match="file name too long"):
        image_io.read_header(image_io.find_image_files([name])[0])


# -- decoders ------------------------------------------------------------------------------------
def test_damaged_gzip_stream(tmp_path):
    raw = gzip.compress(_mrc(tmp_path, _stack()).read_bytes())
    bad = bytearray(raw)
    bad[len(bad) // 2] ^= 0xFF
    _refused(_write(tmp_path / "bad.mrc.gz", bad), "gzip")


def test_damaged_bzip2_stream(tmp_path):
    raw = bytearray(bz2.compress(_mrc(tmp_path, _stack()).read_bytes()))
    raw[20:40] = b"\0" * 20
    _refused(_write(tmp_path / "bad.mrc.bz2", raw), "bzip2")


def _set_tiff_tags(path, values):
    """Overwrite short values of the first page's tags (``{tag: value}``) in a little-endian
    classic TIFF, as a damaged file would have them."""
    raw = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for i in range(struct.unpack_from("<H", raw, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", raw, entry)[0]
        if tag in values:
            struct.pack_into("<H", raw, entry + 8, values[tag])
    path.write_bytes(bytes(raw))


def test_tiff_with_wrong_dimensions(tmp_path):
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    _set_tiff_tags(path, {256: 60000, 257: 60000})  # width, length
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _refused(path, "truncated or wrong dimensions", "60000x60000 uint16 needs 7,200,000,000")


def test_compressed_tiff_with_impossible_dimensions(tmp_path):
    path = tmp_path / "zip.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
                     compression="zlib")
    _set_tiff_tags(path, {256: 60000, 257: 60000})
    _refused(path, "wrong dimensions or damaged file", "more than")


def test_tifffile_log_messages_stay_off_stderr(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    _set_tiff_tags(path, {256: 65})  # one column wider than the data
    _one_line(CliRunner().invoke(cli, ["info", str(path)]), path, "wrong dimensions")


def _png_with_size(path, width, height):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    struct.pack_into(">II", raw, 16, width, height)
    struct.pack_into(">I", raw, 29, zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    return path


def test_png_with_impossible_dimensions(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _refused(_png_with_size(tmp_path / "bomb.png", 100000, 100000), "too many pixels")
        _refused(_png_with_size(tmp_path / "wide.png", 9000, 9000), "wrong size or damaged",
                 "9000x9000")


def test_png_pixel_size_text_that_is_not_a_number(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(png.PIXEL_SIZE_KEY, "nan")
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(
        tmp_path / "p.png", pnginfo=info)
    assert image_io.read_header(tmp_path / "p.png").pixel_size is None


def test_tiff_decoder_errors_are_input_errors(tmp_path, monkeypatch):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.arange(256, dtype=np.uint16).reshape(16, 16))

    def broken(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(tiff, "read_data", broken)
    _refused(path, "TIFF pixel data cannot be read (decoder exploded)")


# -- outputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["mrc", "tiff", "png"])
def test_output_name_too_long(tmp_path, fmt):
    path = tmp_path / ("d" * 250 + image_io.DEFAULT_SUFFIX[fmt])
    with pytest.raises(OutputError) as err:
        image_io.write_image(path, np.ones((16, 16), np.float32), fmt=fmt)
    text = str(err.value)
    assert "file name too long" in text and "shorten --suffix or the input's name" in text
    assert "at most 240 fit" in text and "\n" not in text
    assert list(tmp_path.iterdir()) == []
    fits = tmp_path / ("d" * (240 - len(image_io.DEFAULT_SUFFIX[fmt])) +
                       image_io.DEFAULT_SUFFIX[fmt])
    image_io.write_image(fits, np.arange(256, dtype=np.float32).reshape(16, 16), fmt=fmt)
    assert image_io.read_header(fits).shape == (1, 16, 16)


def test_output_name_too_long_from_the_library(tmp_path):
    with pytest.raises(OutputError, match="file name too long"):
        mrc.write_mrc(tmp_path / ("e" * 260 + ".mrc"), np.ones((16, 16), np.float32))


def test_tolerated_header_that_is_then_refused_gives_no_warning(tmp_path):
    raw = bytearray(_mrc(tmp_path, np.zeros((16, 16), np.complex64)).read_bytes())
    raw[208:216] = b"\0" * 8  # no 'MAP ' id or machine stamp: read leniently, then refused
    path = _write(tmp_path / "c.mrc", raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _refused(path, "complex data")


def test_a_dangling_link_in_a_folder_is_one_line_and_exit_3(tiny_model, tmp_path):
    """A data disk that is not mounted must not look like success: the dangling link is one
    error line, the good file is denoised, and the exit status says not everything was."""
    folder = tmp_path / "in"
    folder.mkdir()
    _mrc(folder, np.random.default_rng(0).random((48, 48)).astype(np.float32), "good.mrc")
    os.symlink(tmp_path / "unmounted" / "m1.mrc", folder / "m1.mrc")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["apply", str(folder), "--model", str(tiny_model), "--out",
                                      str(out), "--tile", "64", "--overlap", "16", "-q"])
    lines = [line for line in result.stderr.splitlines() if line.startswith("cryoem-denoise:")]
    assert result.exit_code == 3, result.output
    assert len(lines) == 1 and "m1.mrc" in lines[0] and "symbolic link" in lines[0], lines
    assert sorted(p.name for p in out.iterdir()) == ["good_denoised.mrc", "report.csv",
                                                     "report.html"]
    assert "dangling" in (out / "report.csv").read_text() or "m1.mrc" in (out / "report.csv").read_text()
    # alone, nothing could be done: exit 2
    (folder / "good.mrc").unlink()
    result = CliRunner().invoke(cli, ["apply", str(folder), "--model", str(tiny_model), "--out",
                                      str(tmp_path / "out2"), "--tile", "64", "-q"])
    assert result.exit_code == 2, result.output
