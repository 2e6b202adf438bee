import errno
import fcntl
import os

import pytest

from cryoem_denoise.io import atomic
from cryoem_denoise.errors import OutputError


def test_reserve_space_allocates_blocks(tmp_path):
    path = tmp_path / "f"
    with open(path, "wb") as fh:
        fh.truncate(1 << 20)  # sparse
    assert os.stat(path).st_blocks * 512 < (1 << 20)
    atomic.reserve_space(path, 1 << 20)
    assert os.stat(path).st_blocks * 512 >= (1 << 20)


def test_reserve_space_without_fallocate(tmp_path, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(atomic.os, "posix_fallocate", unsupported)
    path = tmp_path / "f"
    path.write_bytes(b"header" + b"\0" * 100)
    with open(path, "r+b") as fh:
        fh.truncate(100_000)
    atomic.reserve_space(path, 100_000)
    data = path.read_bytes()
    assert data[:6] == b"header" and len(data) == 100_000
    assert os.stat(path).st_blocks * 512 >= 100_000


def test_stale_temporaries_only_of_that_output_and_unlocked(tmp_path):
    out = tmp_path / "x.mrc"
    stale = tmp_path / ".x.mrc.abcd1234.part"
    held = tmp_path / ".x.mrc.held5678.part"
    other = tmp_path / ".xy.mrc.abcd1234.part"
    odd = tmp_path / ".x.mrc.toolongrandom.part"
    for p in (stale, held, other, odd):
        p.write_bytes(b"partial")
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert atomic.remove_stale_temporaries(out) == 1
    finally:
        os.close(fd)
    assert not stale.exists() and held.exists() and other.exists() and odd.exists()


def test_output_folder(tmp_path):
    made = tmp_path / "a" / "b"
    with atomic.output_folder(made):
        assert made.is_dir()
    assert not made.exists()  # created, nothing written: removed
    with atomic.output_folder(made) as folder:
        (folder / "result.txt").write_text("x")
    assert (made / "result.txt").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        with atomic.output_folder(blocker):
            pass
    with pytest.raises(OutputError, match="cannot create the output folder"):
        with atomic.output_folder(blocker / "sub"):
            pass


def test_describe_os_error():
    assert atomic.describe_os_error(OSError(errno.ENOSPC, "x")) == "no space left on device"
    assert atomic.describe_os_error(OSError(errno.EROFS, "x")) == "read-only file system"
    assert atomic.describe_os_error(OSError(errno.EACCES, "x")) == "permission denied"
