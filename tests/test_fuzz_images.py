"""Fuzzing the image readers (issue 22): mutated MRC, TIFF and PNG files.

Valid files of several kinds (MRC modes 0, 1, 2, 6 and 12, stacks and volumes, an extended
header, big-endian, an old header without the 'MAP ' id, gzip and bzip2; TIFF single and
multi-page, compressed, tiled, ImageJ, BigTIFF; PNG 8 and 16 bits) are mutated: bits flipped,
bytes overwritten, header fields (MRC words, TIFF tag entries, PNG IHDR fields) set to extreme
values, bytes inserted, deleted, appended, the file truncated; compressed MRC files are
mutated inside or outside the compression. Each mutated file is read in-process with
:func:`image_io.read_header` and :func:`image_io.read_sections`, and must give either

- a result consistent with its header: sections of the header's shape and pixel type, and
  for MRC files exactly the bytes after ``1024 + nsymbt`` (so no byte is ignored or taken
  from the header), or
- one :class:`InputError` naming the file, on one line,

and nothing else: no other exception, no warning but an :class:`InputWarning`, no hang (a
SIGALRM guard and hypothesis' deadline), no file left behind. A few cases also run the CLI
(``cryoem-denoise info``): exit 0, or exit 2 with exactly one ``cryoem-denoise: error:``
line on stderr.

Deterministic (``derandomize``: the same examples on every run) and bounded here;
``benchmarks/bench_fuzz.py`` runs the same properties with random seeds for a long run.
"""

import bz2
import datetime
import gzip
import io
import os
import struct
import tempfile
import warnings
import zlib
from functools import cache
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

import fuzzing
from cryoem_denoise.errors import InputError, InputWarning
from cryoem_denoise.io import image_io

#: Examples per kind in ``make test`` (about 35 s in all on a 2-core machine; the readers'
#: tests are marked slow, so ``make test-fast`` runs the quick ones and the CLI's only).
EXAMPLES = {"mrc": 4000, "tiff": 3000, "png": 3000, "cli": 400}
#: Examples per kind of the quick test (``make test-fast``).
QUICK = 12
#: Seconds one example may take before it counts as a hang.
HANG_SECONDS = 10


# -- the valid files mutated -----------------------------------------------------------------
def _mrc_bytes(data, *, stack=False, big_endian=False, extended=None, voxel=1.5):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mrc"
        data = np.asarray(data)
        with mrcfile.new(path) as m:
            m.set_data(data.astype(data.dtype.newbyteorder(">")) if big_endian else data)
            if stack:
                m.set_image_stack()
            if extended is not None:
                m.set_extended_header(np.frombuffer(extended, dtype="V1"))
                m.header.exttyp = b"SERI"
            m.voxel_size = voxel
        return path.read_bytes()


def _old_style(raw):
    raw = bytearray(raw)
    raw[208:216] = b"\0" * 8  # no 'MAP ' id, no machine stamp
    raw[108:112] = b"\0" * 4  # no version
    return bytes(raw)


def _tiff_bytes(data, **kw):
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, **kw)
    return buf.getvalue()


def _pagewise_tiff(data, **kw):
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        for page in data:
            tw.write(page, photometric="minisblack", **kw)
    return buf.getvalue()


def _png_bytes(data, **kw):
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _ours(fmt, data, **kw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{image_io.DEFAULT_SUFFIX[fmt]}"
        image_io.write_image(path, data, fmt=fmt, **kw)
        return path.read_bytes()


@cache
def bases():
    """name → (kind, suffix, compression, uncompressed bytes)."""
    rng = np.random.default_rng(22)
    f32 = rng.normal(0, 1, (3, 10, 9)).astype(np.float32)
    u16 = rng.integers(0, 4000, (12, 16)).astype(np.uint16)
    out = {
        "mrc float32 image": ("mrc", ".mrc", None, _mrc_bytes(f32[0])),
        "mrc int8 stack": ("mrc", ".mrcs", None,
                           _mrc_bytes(rng.integers(-100, 100, (3, 9, 8)).astype(np.int8),
                                      stack=True)),
        "mrc int16 volume": ("mrc", ".mrc", None,
                             _mrc_bytes(rng.integers(-999, 999, (4, 8, 8)).astype(np.int16))),
        "mrc uint16 extended header": ("mrc", ".mrc", None,
                                       _mrc_bytes(u16, extended=bytes(range(256)) * 2)),
        "mrc float16 stack": ("mrc", ".mrcs", None,
                              _mrc_bytes(f32.astype(np.float16), stack=True)),
        "mrc big-endian": ("mrc", ".mrc", None, _mrc_bytes(f32, big_endian=True)),
        "mrc old header": ("mrc", ".mrcs", None, _old_style(_mrc_bytes(f32, stack=True))),
        "mrc gzip": ("mrc", ".mrc.gz", "gzip", _mrc_bytes(f32)),
        "mrc bzip2": ("mrc", ".mrc.bz2", "bzip2", _mrc_bytes(u16)),
        "tiff uint16": ("tiff", ".tif", None, _tiff_bytes(u16)),
        "tiff float32 stack": ("tiff", ".tif", None, _tiff_bytes(f32, photometric="minisblack")),
        "tiff zlib pages": ("tiff", ".tif", None, _pagewise_tiff(f32, compression="zlib")),
        "tiff tiled": ("tiff", ".tif", None, _tiff_bytes(
            rng.integers(0, 255, (32, 32)).astype(np.uint8), tile=(16, 16))),
        "tiff imagej": ("tiff", ".tif", None, _tiff_bytes(
            f32, imagej=True, resolution=(1 / 0.12, 1 / 0.12), metadata={"unit": "nm"})),
        "tiff bigtiff": ("tiff", ".tif", None, _tiff_bytes(u16, bigtiff=True)),
        "tiff ours": ("tiff", ".tif", None, _ours("tiff", f32, kind="stack",
                                                   voxel_size=(1.1, 1.1, 1.1))),
        "png 8-bit": ("png", ".png", None, _png_bytes(u16.astype(np.uint8))),
        "png 16-bit": ("png", ".png", None, _ours("png", u16.astype(np.float32),
                                                  dtype="uint16", voxel_size=(0.9, 0.9, 0))),
        "png interlaced": ("png", ".png", None, _png_bytes(u16.astype(np.uint8),
                                                           interlace=1)),
    }
    return out


def names_of(kind):
    return sorted(name for name, b in bases().items() if b[0] == kind)


# -- mutations -------------------------------------------------------------------------------
EXTREME = [0, 1, 2, 3, 4, 6, 7, 8, 9, 12, 16, 101, 127, 128, 255, 256, 1023, 1024, 1025,
           4096, 65535, 65536, 1 << 24, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, -1, -2, -1024]
values = st.one_of(st.sampled_from(EXTREME), st.integers(-(1 << 31), (1 << 32) - 1))
#: MRC header words: nx, ny, nz, mode, mx..mz, cella, nsymbt, exttyp, nversion, map, machst
MRC_WORDS = [0, 4, 8, 12, 28, 32, 36, 40, 44, 48, 64, 92, 104, 108, 208, 212]
positions = st.one_of(st.integers(0, 1100), st.integers(0, 1 << 20))
small_bytes = st.binary(min_size=1, max_size=16)
appended = st.one_of(st.binary(min_size=1, max_size=64),
                     st.sampled_from([256, 1024, 4096]).map(lambda n: b"\0" * n),
                     st.binary(min_size=1000, max_size=1100))

common_ops = [
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("set"), positions, small_bytes),
    st.tuples(st.just("int"), st.integers(0, 1100), values, st.sampled_from("<>"),
              st.sampled_from("BHI")),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("append"), appended),
    st.tuples(st.just("insert"), st.one_of(st.just(1024), positions), appended),
    st.tuples(st.just("delete"), positions, st.integers(1, 1100)),
]
mrc_op = st.one_of(
    *common_ops,
    st.tuples(st.just("int"), st.one_of(st.sampled_from(MRC_WORDS),
                                        st.integers(0, 255).map(lambda k: 4 * k)),
              values, st.sampled_from("<>"), st.just("I")),
)
tiff_op = st.one_of(
    *common_ops,
    st.tuples(st.just("tiff entry"), st.integers(0, 40), st.sampled_from([0, 2, 4, 8]),
              values),
)
png_op = st.one_of(
    *common_ops,
    st.tuples(st.just("png ihdr"), st.sampled_from([16, 20, 24, 25, 26, 27, 28]), values),
    st.tuples(st.just("png chunk length"), st.integers(0, 8), values),
    st.tuples(st.just("png fix crc")),
)
OPS = {"mrc": mrc_op, "tiff": tiff_op, "png": png_op}


def example(kind):
    """A strategy of ``(base name, mutations, mutate inside the compression)``."""
    return st.tuples(st.sampled_from(names_of(kind)),
                     st.lists(OPS[kind], min_size=1, max_size=4),
                     st.booleans())


def _tiff_entries(b):
    """Offsets of the first IFD's 12-byte entries (classic little-endian TIFF only)."""
    if bytes(b[:4]) != b"II*\0" or len(b) < 8:
        return []
    ifd = int.from_bytes(b[4:8], "little")
    if ifd + 2 > len(b):
        return []
    n = int.from_bytes(b[ifd:ifd + 2], "little")
    return [ifd + 2 + 12 * i for i in range(n) if ifd + 2 + 12 * i + 12 <= len(b)]


def _png_chunks(b):
    """``(offset, length)`` of each PNG chunk that fits in the file."""
    chunks, pos = [], 8
    while pos + 12 <= len(b):
        length = int.from_bytes(b[pos:pos + 4], "big")
        if pos + 12 + length > len(b):
            break
        chunks.append((pos, length))
        pos += 12 + length
    return chunks


def _fix_crc(b, pos, length):
    crc = zlib.crc32(bytes(b[pos + 4:pos + 8 + length])) & 0xFFFFFFFF
    b[pos + 8 + length:pos + 12 + length] = crc.to_bytes(4, "big")


def mutate(data, ops):
    """Apply the mutations ``ops`` to ``data`` (bytes); return the new bytes."""
    b = bytearray(data)
    for op in ops:
        name, n = op[0], len(b)
        if name == "flip" and n:
            b[op[1] % n] ^= 1 << op[2]
        elif name == "set" and n:
            i = op[1] % n
            b[i:i + len(op[2])] = op[2]
        elif name == "int":
            _, offset, value, order, code = op
            size = struct.calcsize(code)
            if offset + size <= n:
                struct.pack_into(order + code, b, offset, value % (1 << (8 * size)))
        elif name == "truncate":
            del b[op[1] % (n + 1):]
        elif name == "append":
            b += op[1]
        elif name == "insert":
            i = op[1] % (n + 1)
            b[i:i] = op[2]
        elif name == "delete":
            i = op[1] % (n + 1)
            del b[i:i + op[2]]
        elif name == "tiff entry":
            entries = _tiff_entries(b)
            if entries:
                where = entries[op[1] % len(entries)] + op[2]
                code = "<H" if op[2] in (0, 2) else "<I"
                struct.pack_into(code, b, where, op[3] % (1 << (8 * struct.calcsize(code))))
        elif name == "png ihdr":
            _, offset, value = op
            code = ">I" if offset in (16, 20) else ">B"
            if offset + struct.calcsize(code) <= n and n >= 33:
                struct.pack_into(code, b, offset, value % (1 << (8 * struct.calcsize(code))))
                _fix_crc(b, 8, 13)
        elif name == "png chunk length":
            chunks = _png_chunks(b)
            if chunks:
                pos = chunks[op[1] % len(chunks)][0]
                b[pos:pos + 4] = (op[2] % (1 << 32)).to_bytes(4, "big")
        elif name == "png fix crc":
            for pos, length in _png_chunks(b):
                _fix_crc(b, pos, length)
    return bytes(b)


def build(name, ops, inside):
    """The mutated file's bytes for base ``name`` (compressed files: mutated inside the
    compression when ``inside``, else the compressed bytes are mutated)."""
    _, _, compression, raw = bases()[name]
    if compression is None:
        return mutate(raw, ops)
    pack = gzip.compress if compression == "gzip" else bz2.compress
    if inside:
        return pack(mutate(raw, ops))
    return mutate(pack(raw), ops)


# -- the properties ----------------------------------------------------------------------------
def time_limit(seconds=HANG_SECONDS):
    return fuzzing.time_limit(seconds)


def _check_error(exc, path):
    text = str(exc)
    assert exc.path == str(path), text
    assert text.startswith(f"{path}: ") and len(text) > len(str(path)) + 2, text
    assert "\n" not in text and "\r" not in text, text


def _decompressed(path):
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    return data


def check_read(path):
    """The in-process property: a consistent result or one :class:`InputError`.

    Returns ``'read'`` or ``'refused'``; fails (``AssertionError``) otherwise.
    """
    folder = path.parent
    before = sorted(os.listdir(folder))
    with warnings.catch_warnings(record=True) as caught, time_limit():
        warnings.simplefilter("always")
        try:
            header = image_io.read_header(path)
            sections, again = image_io.read_sections(path)
        except InputError as exc:
            _check_error(exc, path)
            outcome = "refused"
        else:
            outcome = "read"
    stray = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, InputWarning)]
    assert not stray, stray
    for w in caught:
        assert "\n" not in str(w.message) and str(w.message).startswith(f"{path}: ")
    assert sorted(os.listdir(folder)) == before, "files left behind"
    if outcome == "refused":
        return outcome
    n, ny, nx = header.shape
    assert again == header
    assert min(n, ny, nx) >= 1 and min(ny, nx) >= 8, header
    assert sections.shape == header.shape, (sections.shape, header)
    want = np.dtype(header.dtype)
    assert (sections.dtype.kind, sections.dtype.itemsize) == (want.kind, want.itemsize), \
        (sections.dtype, header.dtype)
    if header.format == "mrc":
        raw = _decompressed(path)
        start = 1024 + header.extended_header_bytes
        # every byte accounted for: no extra bytes ignored, no header bytes read as pixels
        assert len(raw) == start + sections.nbytes, (len(raw), start, sections.nbytes)
        assert sections.tobytes() == raw[start:]
    return outcome


def check_cli(path):
    """``cryoem-denoise info FILE``: exit 0, or exit 2 with exactly one error line."""
    from click.testing import CliRunner

    from cryoem_denoise.cli import cli

    folder = path.parent
    before = sorted(os.listdir(folder))
    with warnings.catch_warnings(record=True) as caught, time_limit():
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, ["info", str(path)])
    # the CLI prints InputWarning as one line; any other warning would be several lines
    stray = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, InputWarning)]
    assert not stray, stray
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("cryoem-denoise: error: ")]
    others = [line for line in lines if line not in errors]
    assert all(line.startswith(f"cryoem-denoise: warning: {path}: ") for line in others), lines
    assert len(others) <= 1, lines
    if result.exit_code == 0:
        assert not errors, lines
    else:
        assert result.exit_code == 2, (result.exit_code, lines)
        assert len(errors) == 1 and errors[0].startswith(f"cryoem-denoise: error: {path}: "), \
            lines
    assert sorted(os.listdir(folder)) == before, "files left behind"
    return "read" if result.exit_code == 0 else "refused"


def run_example(folder, name, ops, inside, check=check_read):
    """Write the mutated file into ``folder``, check it, remove it; return the outcome."""
    path = Path(folder) / f"fuzz{bases()[name][1]}"
    path.write_bytes(build(name, ops, inside))
    try:
        return check(path)
    finally:
        path.unlink()


def fuzz_property(folder, check=check_read, counts=None):
    """The function hypothesis runs on each ``(name, ops, inside)`` example; ``counts``
    (a dict) tallies the outcomes."""

    def run(case):
        outcome = run_example(folder, *case, check=check)
        if counts is not None:
            counts[outcome] = counts.get(outcome, 0) + 1

    return run


# -- the tests --------------------------------------------------------------------------------
def fuzz_settings(examples, derandomize=True):
    return settings(max_examples=examples, derandomize=derandomize, database=None,
                    deadline=datetime.timedelta(seconds=5), print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory):
    """Hypothesis' own files (its cache of constants) in a temporary folder, not in the
    working tree; no example database (``database=None``). Not reset afterwards: hypothesis
    may still write its cache when the tests are over."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def test_every_base_file_reads(folder):
    """The files mutated are valid to begin with (and read exactly)."""
    for name in bases():
        assert run_example(folder, name, [], True) == "read", name


@pytest.mark.parametrize("kind", ["mrc", "tiff", "png"])
def test_fuzz_quick(folder, kind):
    """A few examples of each kind (``make test-fast``)."""
    fuzz_settings(QUICK)(given(example(kind))(
        fuzz_property(folder)))()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mrc", "tiff", "png"])
def test_fuzz_readers(folder, kind):
    fuzz_settings(EXAMPLES[kind])(given(example(kind))(
        fuzz_property(folder)))()


def test_fuzz_cli_info(folder):
    cases = st.one_of(example("mrc"), example("tiff"), example("png"))
    fuzz_settings(EXAMPLES["cli"])(given(cases)(
        fuzz_property(folder, check_cli)))()
