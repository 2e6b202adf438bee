import json

import numpy as np
import pytest
from click.testing import CliRunner

from cryoem_denoise.evaluation import evaluate as ev
from cryoem_denoise.cli import cli
from cryoem_denoise.config import EVALUATE_METHODS
from cryoem_denoise.errors import ConfigError, InputError


@pytest.fixture
def clean_stack(clean_mrc):
    return clean_mrc("clean.mrcs", (6, 64, 64), stack=True, seed=3)


def _cfg(**kw):
    base = dict(sigmas=(30.0,), seed=1, jobs=2,
                ksvd=ev.baselines.KSVDConfig(atoms=32, train_patches=400, iterations=2, stride=4))
    base.update(kw)
    return ev.EvaluateConfig(**base)


@pytest.mark.slow
@pytest.mark.backends
def test_evaluate_all_methods_tables_figures_and_resume(tiny_model, clean_stack, tmp_path):
    out = tmp_path / "ev"
    results = ev.evaluate([clean_stack], out, _cfg(), model_dir=tiny_model)
    summary = results["summary"]["30.0"]
    assert set(summary) == set(EVALUATE_METHODS)
    assert summary["gan"]["n"] == 4  # 6 images, 2 of them (every 5th) choose the blur width
    assert len(results["images"]["validation"]) == 2
    assert results["gaussian_widths"][30.0] > 0
    for m in ("bm3d", "ksvd", "gaussian"):
        assert summary[m]["psnr"] > summary["noisy"]["psnr"]
    assert summary["noisy"]["rmse"] == pytest.approx(30, rel=0.05)
    for name in ("results.json", "results.csv", "table.md", "fig10.png", "fig6_sigma30.png"):
        assert (out / name).stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "| PSNR ↑ |" in table and "BM3D" in table and "K-SVD" in table
    cells = (out / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 4 * 5
    # a rerun finds every cell done and recomputes nothing
    again = ev.evaluate([clean_stack], out, _cfg(), model_dir=tiny_model)
    assert len((out / "cells.jsonl").read_text().splitlines()) == len(cells)
    assert again["summary"]["30.0"]["bm3d"]["psnr"] == summary["bm3d"]["psnr"]
    # other noise (seed) is not "the same cell": every method is redone, the old ones ignored
    reseeded = ev.evaluate([clean_stack], out, _cfg(seed=2, methods=("noisy", "gaussian")),
                           model_dir=tiny_model)
    assert len((out / "cells.jsonl").read_text().splitlines()) == len(cells) + 2 * 4
    assert reseeded["summary"]["30.0"]["noisy"]["n"] == 4
    assert reseeded["summary"]["30.0"]["noisy"]["mae"] != summary["noisy"]["mae"]


def test_noise_is_shared_by_methods_and_seeded():
    img = np.zeros((16, 16), np.float32)
    a = ev.noisy_version(ev.CleanImage("s.mrcs[3]", img, "s.mrcs", 3), 40, 0)
    np.testing.assert_array_equal(a, ev.noisy_version(ev.CleanImage("x", img, "s.mrcs", 3), 40, 0))
    assert not np.array_equal(a, ev.noisy_version(ev.CleanImage("x", img, "s.mrcs", 4), 40, 0))
    assert not np.array_equal(a, ev.noisy_version(ev.CleanImage("x", img, "t.mrcs", 3), 40, 0))
    assert not np.array_equal(a, ev.noisy_version(ev.CleanImage("x", img, "s.mrcs", 3), 40, 1))
    assert not np.array_equal(a, ev.noisy_version(ev.CleanImage("x", img, "s.mrcs", 3), 41, 0))
    assert a.std() == pytest.approx(40, rel=0.15)


def test_bad_requests_fail_before_work(clean_stack, tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        _cfg(methods=("bm3d", "nlm")).validate()
    with pytest.raises(ConfigError):
        _cfg(sigmas=(0.0,)).validate()
    with pytest.raises(ConfigError):
        _cfg(sigmas=(300.0,)).validate()
    with pytest.raises(InputError, match="does not exist"):
        ev.evaluate([clean_stack], tmp_path / "x", _cfg(), model_dir=tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["evaluate", str(empty), "--out", str(tmp_path / "o"),
                                      "--methods", "bm3d"])
    assert result.exit_code == 2 and "no MRC files or other images" in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(clean_stack), "--out", str(tmp_path / "o"),
                                      "--methods", "bm3d,foo"])
    assert result.exit_code == 2 and "unknown method 'foo'" in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(clean_stack), "--out", str(tmp_path / "o"),
                                      "--sigma", "10,400", "--methods", "bm3d"])
    assert result.exit_code == 2 and "sigma" in result.output


@pytest.mark.slow
def test_cli_without_gan(clean_stack, tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", str(clean_stack), "--out", str(tmp_path / "o"),
                                      "--methods", "gaussian,noisy", "--sigma", "20,40", "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "results.json").read_text())
    assert set(record["summary"]) == {"20.0", "40.0"}
    assert "sigma = 20" in result.output


@pytest.mark.slow
def test_non_ascii_names_and_a_bad_file_left_out(clean_mrc, tmp_path):
    src = clean_mrc("Ångström_µ.mrcs", (4, 48, 48), stack=True, seed=5)
    bad = tmp_path / "défaut.mrc"
    bad.write_bytes(b"garbage" * 300)
    out = tmp_path / "évaluation"
    result = CliRunner().invoke(cli, ["evaluate", str(src), str(bad), "--out", str(out),
                                      "--methods", "gaussian,noisy", "--sigma", "25", "-q"])
    assert result.exit_code == 3  # one file left out, the other evaluated
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "défaut.mrc" in errors[0] and "not an MRC file" in errors[0]
    assert "Ångström_µ.mrcs[1]" in (out / "results.json").read_text(encoding="utf-8") or \
        "\\u00c5ngstr" in (out / "results.json").read_text()


def _processes_in_group(pgid):
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    found.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
def test_workers_end_with_a_killed_evaluate(clean_mrc, tmp_path):
    """`evaluate` killed with SIGKILL leaves no worker process behind (issue: a worker was
    still blocked on a pipe 15 s later)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    stack = clean_mrc("many.mrcs", (12, 128, 128), stack=True)
    proc = subprocess.Popen([sys.executable, "-m", "cryoem_denoise", "evaluate", str(stack),
                             "--methods", "ksvd,bm3d", "--jobs", "2", "-q",
                             "--out", str(tmp_path / "ev")],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(_processes_in_group(proc.pid)) < 3:
        time.sleep(0.2)  # the parent and its two workers
    assert len(_processes_in_group(proc.pid)) >= 3, "the workers never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and _processes_in_group(proc.pid):
        time.sleep(0.2)
    left = _processes_in_group(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "worker processes outlived the killed evaluate"


def test_a_failed_first_run_leaves_no_folder(clean_stack, tmp_path, monkeypatch):
    """A run that fails (here: no space when writing the results) into a folder it created
    leaves nothing behind."""
    from cryoem_denoise.errors import OutputError

    def full(*args, **kwargs):
        raise OutputError("no space left on device", tmp_path / "ev" / "results.json")

    monkeypatch.setattr(ev, "write_results", full)
    cfg = ev.EvaluateConfig(sigmas=(30.0,), methods=("noisy", "gaussian")).validate()
    with pytest.raises(OutputError):
        ev.evaluate([clean_stack], tmp_path / "ev", cfg)
    assert not (tmp_path / "ev").exists()


def test_tables_name_a_model_for_what_it_is():
    # issue 19: never "GAN" for a model trained without a critic; "the paper's WGAN" only
    # for the paper's recipe
    from types import SimpleNamespace

    from cryoem_denoise.config import paper_config, quality_config, tiny_config
    from cryoem_denoise.evaluation.evaluate import model_label
    from cryoem_denoise.model.model_store import default_model_dir

    def label(cfg, folder=None):
        return model_label(SimpleNamespace(config=cfg, model_dir=folder))

    assert label(paper_config()) == "the paper's WGAN"
    assert label(quality_config()) == "U-Net, no critic"
    assert label(quality_config(), default_model_dir()) == "shipped model (U-Net, no critic)"
    other = paper_config()
    other.train.clip = 0.01
    assert label(other) == "WGAN (own settings)"
    assert label(tiny_config()) == "WGAN (own settings)"  # a critic, smaller than the paper's
