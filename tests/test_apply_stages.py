"""``apply`` over many files runs in three stages (read ahead, the model, written behind),
with one or more files in each: the same outputs as one file at a time, a failure behind
fails only its file, an interruption leaves complete files and no partial one, and the
queue stays bounded."""

import threading
import time

import numpy as np
import pytest

from cryoem_denoise.inference import apply_files
from cryoem_denoise.inference.conditioning import Conditioning
from cryoem_denoise.inference.denoiser import Denoiser
from cryoem_denoise.io import image_io


@pytest.fixture
def folder(tmp_path, clean_mrc):
    (tmp_path / "in").mkdir()
    clean_mrc("in/a.mrc", (150, 130))
    clean_mrc("in/b.mrcs", (4, 48, 48), stack=True, seed=1)
    clean_mrc("in/c.mrc", (96, 120), seed=2)
    clean_mrc("in/d.mrc", (140, 140), seed=3)
    return tmp_path / "in"


@pytest.fixture(params=[1, 2], ids=["1 worker", "2 workers"])
def denoiser(tiny_model, request):
    return Denoiser.load(tiny_model, tile=64, overlap=16, workers=request.param)


def _run(denoiser, folder, out):
    options = apply_files.ApplyOptions(out_dir=out, overwrite=True)
    out.mkdir(exist_ok=True)
    jobs = apply_files.plan_jobs(image_io.find_image_files([folder]), options)
    return jobs, apply_files.run_jobs(denoiser, jobs, options)


def _files(out):
    return sorted(p.name for p in out.iterdir())


@pytest.mark.backends
def test_three_stages_write_what_one_file_at_a_time_writes(denoiser, folder, tmp_path):
    jobs, report = _run(denoiser, folder, tmp_path / "staged")
    assert len(report.done) == 4 and not report.failed
    assert [e.status for e in report.entries] == ["denoised"] * 4
    assert all(e.thumbnails for e in report.entries)  # taken behind the model
    serial = tmp_path / "serial"
    serial.mkdir()
    options = apply_files.ApplyOptions(out_dir=serial)
    for job in apply_files.plan_jobs(image_io.find_image_files([folder]), options):
        apply_files.apply_file(denoiser, job, options)
    for job in jobs:
        name = job.outputs["denoised"].name
        staged, _ = image_io.read_sections(tmp_path / "staged" / name)
        alone, _ = image_io.read_sections(serial / name)
        np.testing.assert_array_equal(staged, alone)


def test_a_section_failing_behind_fails_only_its_file(denoiser, folder, tmp_path,
                                                      monkeypatch):
    restore = Conditioning.restore

    def failing(self, result, prepared):
        if prepared.shape == (96, 120):  # c.mrc
            raise OSError(28, "No space left on device")
        return restore(self, result, prepared)

    monkeypatch.setattr(Conditioning, "restore", failing)
    out = tmp_path / "out"
    _, report = _run(denoiser, folder, out)
    assert [p.name for p, _ in report.failed] == ["c.mrc"]
    assert "no space left on device" in report.failed[0][1].lower()
    assert sorted(p.name for p in report.done) == ["a.mrc", "b.mrcs", "d.mrc"]
    assert "c_denoised.mrc" not in _files(out)
    assert "c.mrc" not in {noise.path.name for noise in report.noise_levels}
    assert not [n for n in _files(out) if n.startswith(".")]  # no partial file left


def test_an_interruption_keeps_complete_files_and_leaves_no_partial_one(
        denoiser, folder, tmp_path, monkeypatch):
    prepare = apply_files._FileFlow.prepare

    def interrupted(self, k):
        if self.source.name == "c.mrc":
            raise KeyboardInterrupt
        return prepare(self, k)

    monkeypatch.setattr(apply_files._FileFlow, "prepare", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _run(denoiser, folder, out)
    # a and b, which the model had finished, are complete; nothing else is left
    assert _files(out) == ["a_denoised.mrc", "b_denoised.mrcs"]
    monkeypatch.setattr(apply_files._FileFlow, "prepare", prepare)
    _run(denoiser, folder, tmp_path / "again")
    for name in ("a_denoised.mrc", "b_denoised.mrcs"):
        np.testing.assert_array_equal(image_io.read_sections(out / name)[0],
                                      image_io.read_sections(tmp_path / "again" / name)[0])


def test_the_queue_behind_the_model_stays_bounded():
    behind = apply_files._Behind()
    lock = threading.Lock()
    most = [0]

    def slow(i):
        time.sleep(0.02)
        return i

    try:
        futures = []
        for i in range(10):
            futures.append(behind.submit(slow, i))
            with lock:
                most[0] = max(most[0], sum(not f.done() for f in futures))
    finally:
        behind.close()
    assert [f.result() for f in futures] == list(range(10))  # in order, all done
    assert most[0] <= apply_files.BEHIND_QUEUE


def test_one_worker_per_stage_on_a_cpu_and_more_with_a_gpu(tiny_model):
    from cryoem_denoise.runtime import backend

    auto = Denoiser.load(tiny_model)
    assert auto.inference.workers == 0
    assert apply_files.stage_workers(auto) == (apply_files.GPU_WORKERS if backend.gpus() else 1)
    assert apply_files.stage_workers(Denoiser.load(tiny_model, workers=3)) == 3
