"""The package's cache folder (fetched samples, simulated fields, compiled code) and file
hashes that key it."""

import hashlib
import os
from pathlib import Path

__all__ = ["ENV_CACHE", "cache_dir", "sha256_of"]

#: Environment variable naming the cache folder.
ENV_CACHE = "CRYOEM_DENOISE_DATA"


def cache_dir():
    """The sample-data cache folder (not created)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cryoem-denoise"


def sha256_of(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
